"""bench/results.json: each benchmark writes its own key (or sub-key), leaving every other key as it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"


def merge_results(keys: tuple[str, ...], value: Any, path: Path = RESULTS) -> None:
    """Set results[keys[0]][keys[1]]... to ``value``; intermediate keys are created, siblings kept."""
    results = json.loads(path.read_text()) if path.is_file() else {}
    node = results
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
