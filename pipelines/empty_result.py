"""An empty result is loud: the stage where rows went to zero, and why.

A run whose input is empty, or whose every row a stage dropped, still "succeeds" stage by stage; without
this check it ends in "precision 0.000" and "pipeline finished", and the user learns nothing of where the
rows went. The driver checks each stage's manifest as the stage finishes.
"""

from __future__ import annotations

from typing import Any

from pipelines.stage import Stage


def empty_result_warning(stage: Stage, manifest: dict[str, Any], input_paths: list[str]) -> str | None:
    """The warning for a stage that wrote no rows (None when it wrote some): where the rows went to zero
    and the top drop reason, so the user knows which input or which config key to look at."""
    if manifest["rows"]:
        return None
    rows_in = manifest.get("rows_in", 0)
    drops = {reason: n for reason, n in manifest.get("drops", {}).items() if n}
    if rows_in == 0:
        if stage.upstream is None:
            cause = f"its input holds no rows ({', '.join(input_paths) or 'input.paths is empty'})"
        else:
            cause = f"its upstream stage {stage.upstream!r} is empty"
        return f"WARNING: empty result: stage {stage.name!r} read 0 rows: {cause}"
    if drops:
        reason, count = max(drops.items(), key=lambda kv: (kv[1], kv[0]))
        why = f"top drop reason: {reason} ({count} of {rows_in} rows); all drops: " + ", ".join(
            f"{k}={v}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1])
        )
    else:
        why = "no drop reason was recorded"
    return f"WARNING: empty result: stage {stage.name!r} dropped every row ({rows_in} in, 0 out); {why}"
