"""Image-level precision and recall of a built dataset against a sample's ground truth.

Ground truth (``sample/truth.json``): for each URL, the people whose faces the image really shows. A kept image
is correct when its identity's name (or one of its aliases) is among them. Recall counts the images that show a
person who became an identity and whose URL survived download: what the pipeline could have kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from laioncele.names.extract import name_key


def truth_check(images: pa.Table, identities: pa.Table, truth: dict[str, list[str]]) -> dict[str, Any]:
    """``images``: dataset images (url, identity_id); ``identities``: dataset identities (identity_id, name,
    aliases); ``truth``: url -> names shown."""
    keys_of = {
        row["identity_id"]: {k for n in [row["name"], *row["aliases"]] if (k := name_key(n))}
        for row in identities.to_pylist()
    }
    all_identity_keys = set().union(*keys_of.values()) if keys_of else set()
    kept = {}
    for url, identity in zip(
        images.column("url").to_pylist(), images.column("identity_id").to_pylist(), strict=True
    ):
        kept.setdefault(url, set()).add(identity)
    correct = wrong = 0
    wrong_examples = []
    for url, idents in kept.items():
        shows = {k for n in truth.get(url, []) if (k := name_key(n))}
        for ident in idents:
            if keys_of.get(ident, set()) & shows:
                correct += 1
            else:
                wrong += 1
                wrong_examples.append({"url": url, "identity": ident, "shows": sorted(shows)})
    # Recall over the (url, person) pairs a perfect pipeline would keep: persons that became identities.
    expected = {
        (url, k)
        for url, names in truth.items()
        for n in names
        if (k := name_key(n)) and k in all_identity_keys
    }
    found = {(url, k) for url, idents in kept.items() for i in idents for k in keys_of.get(i, set())}
    recall_hits = len(expected & found)
    return {
        "kept_images": correct + wrong,
        "correct": correct,
        "wrong": wrong,
        "precision": correct / (correct + wrong) if correct + wrong else 0.0,
        "recall": recall_hits / len(expected) if expected else 0.0,
        "expected_pairs": len(expected),
        "identities": sorted(row["name"] for row in identities.to_pylist()),
        "wrong_examples": wrong_examples[:20],
    }


def load_truth(path: str | Path) -> dict[str, list[str]]:
    return json.loads(Path(path).read_text())["shows"]
