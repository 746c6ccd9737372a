"""Purity after faces: the names_identity bench's candidates through the real identity cleaning.

``python -m bench names_identity`` records it under ``names_identity.after_faces`` (from its 100k run). Alone:
``python -m bench.names_after_faces --from=DIR`` re-scores candidates kept by ``python -m bench.names_identity_bench
100000 --keep=DIR`` (which also records it for a fresh corpus); ``--merge`` writes only the ``after_faces``
sub-key. Faces are synthetic (``laioncele.synth.faces_truth``), cleaning is ``clean_identities`` with the production
identity settings (``IdentityConfig`` defaults: insightface thresholds, >= 5 images, share >= 0.2, runner-up
<= 0.5). Face models: the default (a row showing no known person shows no face or strangers; 30% of person
rows mislabelled, the identity generator's rate), over three face draws; a sensitivity case where 30% of a
distractor's rows show one recurring face (a brand's model, a shop's mannequin); and one with half the caption
noise (15% mislabelled), which says how much of the recall lost to faces is that noise.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bench.results_file import merge_results

RECURRING_SHARE = 0.3  # the sensitivity case
LOW_MISLABEL = 0.15  # half the generator's caption noise: how much of the recall loss is that noise
SEEDS = (0, 1, 2)  # face draws of the default model


def after_faces(
    candidates: Mapping[str, Iterable[int]], truth: Mapping[str, Any], min_samples: int = 5
) -> dict:
    """Purity after faces under the default face model and the recurring-face sensitivity case."""
    from laioncele.config import load_config  # noqa: PLC0415
    from laioncele.synth.faces_truth import FaceModel, purity_after_faces  # noqa: PLC0415

    identity = load_config(None).identity
    out: dict[str, Any] = {}
    for label, model in (
        ("default", FaceModel()),
        (f"distractor_recurring_face_{RECURRING_SHARE}", FaceModel(recurring_face_share=RECURRING_SHARE)),
        (f"mislabel_rate_{LOW_MISLABEL}", FaceModel(mislabel_rate=LOW_MISLABEL)),
    ):
        load = os.getloadavg()[0]
        started = time.perf_counter()
        out[label] = purity_after_faces(candidates, truth, identity, model, min_samples)
        out[label]["seconds"] = round(time.perf_counter() - started, 1)
        out[label]["loadavg_1m_at_start"] = round(load, 2)
    # The spread over face draws: the same candidates, the default model, other seeds.
    spread = [out["default"]] + [
        purity_after_faces(candidates, truth, identity, FaceModel(seed=seed), min_samples)
        for seed in SEEDS[1:]
    ]
    out["default_over_seeds"] = {
        "seeds": list(SEEDS),
        **{
            k: [r[k] for r in spread]
            for k in ("purity", "false_identities", "identity_recall_5_19", "identity_recall_20_plus")
        },
    }
    out["note"] = (
        "Candidates with >= 5 samples of the names_identity corpus, each sample given synthetic faces "
        "(laioncele.synth.faces_truth: a row shows the identities it mentions, with the identity generator's noise - "
        "30% mislabelled (no face / co-star alone / strangers), 25% with 1-3 extra faces; any other row "
        "(distractor, photographer credit, background) shows no face (50%) or 1-3 strangers), cleaned by "
        "laioncele.identity.clean_identities with the production identity settings. purity = true / (true + "
        "false) kept identities; background identities out of it, as before faces. The second model gives 30% of "
        "each distractor's rows one recurring face; the third halves the mislabelled share (0.15)."
    )
    return out


def main(argv: list[str]) -> int:
    opts = dict(a.removeprefix("--").split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if "from" not in opts:
        # a fresh corpus: python -m bench.names_identity_bench N records after_faces with the other figures
        print(
            "usage: python -m bench.names_after_faces --from=DIR [--merge]  (DIR holds candidates.json, truth.json)"
        )
        return 2
    source = Path(opts["from"])
    found = json.loads((source / "candidates.json").read_text())
    truth = json.loads((source / "truth.json").read_text())
    rows = truth["rows"]
    result = {"rows": rows, **after_faces(found, truth)}
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(json.dumps(result, indent=2))
    if "--merge" in argv:
        merge_results(("names_identity", "after_faces"), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
