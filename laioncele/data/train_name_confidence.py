"""Fit the name confidence model (``laioncele/names/confidence.py``) and write ``name_confidence.json``.

Examples are the candidate names the extractor finds (``NameExtractor.candidates``: every name the rules accept,
with its features) on
- the captions labelled in full, ``tests/data/labelled_captions.jsonl`` and ``training_captions.jsonl`` (a name
  is right when the caption's label lists it), and
- the hand-judged predictions on other LAION captions (right when judged so), where still found.
Folds are drawn by caption, so a caption's names never sit on both sides; the cross-validated precision and
recall at each cut-off are written to the model file for the choice of ``names.min_confidence``.

    python -m laioncele.data.train_name_confidence [--labelled F ...] [--judged F ...] [--out F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from laioncele.config import NamesConfig
from laioncele.names.confidence import FEATURES, MODEL_PATH, fit_logistic
from laioncele.names.extract import NameExtractor, _plain_key

REPO = Path(__file__).resolve().parents[2]
# The fit's data: captions labelled in full ({caption, names}) and predicted names judged by hand.
LABELLED = (REPO / "tests/data/labelled_captions.jsonl", REPO / "tests/data/training_captions.jsonl")
JUDGED = (REPO / "tests/data/judged_predictions.jsonl",)
CUTOFFS = (0.0, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7)


def examples(
    labelled: list[Path], judged: list[Path], config: NamesConfig | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(features, labels, caption of each example, source of each example: "labelled" or "judged"), from the
    candidates an extractor with ``config`` (default: the default config) finds."""
    config = (config or NamesConfig()).model_copy(update={"min_confidence": 0.0})
    extractor = NameExtractor(config)
    rows = [(json.loads(line), "labelled") for f in labelled for line in f.read_text().splitlines() if line]
    rows += [(json.loads(line), "judged") for f in judged for line in f.read_text().splitlines() if line]
    captions = sorted({row["caption"] for row, _ in rows})
    predicted = dict(zip(captions, extractor.candidates(captions), strict=True))
    feats, labels, groups, sources = [], [], [], []
    for row, source in rows:
        found = dict(predicted[row["caption"]])
        if source == "labelled":
            truth = {_plain_key(n) for n in row["names"]}
            chosen = [(values, _plain_key(n) in truth) for n, values in found.items()]
        else:
            by_key = {_plain_key(n): values for n, values in found.items()}
            values = by_key.get(_plain_key(row["name"]))
            chosen = [(values, bool(row["correct"]))] if values is not None else []
        for values, right in chosen:
            feats.append(values)
            labels.append(float(right))
            groups.append(row["caption"])
            sources.append(source)
    return np.array(feats, dtype=np.float64), np.array(labels), groups, sources


def cross_validated_scores(x: np.ndarray, y: np.ndarray, groups: list[str], folds: int = 5) -> np.ndarray:
    """Each example scored by a model fitted without its caption's fold."""
    captions = sorted(set(groups))
    order = np.random.default_rng(0).permutation(len(captions))
    fold_of = {captions[i]: k % folds for k, i in enumerate(order)}
    fold = np.array([fold_of[g] for g in groups])
    scores = np.zeros(len(y))
    for k in range(folds):
        test = fold == k
        scores[test] = fit_logistic(x[~test], y[~test]).score(x[test])
    return scores


def cutoff_table(scores: np.ndarray, y: np.ndarray, sources: list[str]) -> list[dict[str, float]]:
    """Per cut-off and source: precision of kept names and the share of right names kept."""
    table = []
    for cutoff in CUTOFFS:
        row: dict[str, float] = {"cutoff": cutoff}
        for source in ("labelled", "judged"):
            mask = np.array([s == source for s in sources])
            kept = mask & (scores >= cutoff)
            row[f"{source}_precision"] = round(float(y[kept].mean()) if kept.any() else 1.0, 4)
            row[f"{source}_right_kept"] = round(float(y[kept].sum() / max(1.0, y[mask].sum())), 4)
        table.append(row)
    return table


def _shown(path: Path) -> str:
    """A data file's path as the model file records it: relative to the repository when inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, defaults, what in (
        ("--labelled", LABELLED, "{caption, names}: every real person each caption names"),
        ("--judged", JUDGED, "{caption, name, correct}: predicted names judged by hand"),
    ):
        parser.add_argument(flag, type=Path, nargs="*", default=list(defaults), help=f"JSONL files of {what}")
    parser.add_argument("--out", type=Path, default=MODEL_PATH, help="where the model JSON goes")
    args = parser.parse_args()
    x, y, groups, sources = examples(args.labelled, args.judged)
    table = cutoff_table(cross_validated_scores(x, y, groups), y, sources)
    model = fit_logistic(x, y)
    payload = {
        "features": list(FEATURES),
        "mean": model.mean.round(6).tolist(),
        "scale": model.scale.round(6).tolist(),
        "weights": model.weights.round(6).tolist(),
        "bias": round(model.bias, 6),
        "trained_on": {
            "labelled": [_shown(p) for p in args.labelled],
            "judged": [_shown(p) for p in args.judged],
            "examples": len(y),
            "right": int(y.sum()),
        },
        "cross_validated": table,
    }
    args.out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    for row in table:
        print(row)
    print(f"{len(y)} examples ({int(y.sum())} right) -> {args.out}")


if __name__ == "__main__":
    main()
