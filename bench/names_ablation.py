"""Which per-caption name rules move the identity-level figures (issue 25): each rule family switched off.

Run: ``python -m bench.names_ablation ROWS [ABLATION ...] [--merge] [--per-caption-only]``. One known-truth
corpus (``laioncele.synth.corpus``) is generated and ingested once; each ablation then runs ner ->
names -> candidates on the local executor (``ray.executor=local``, in this process, so a monkeypatch reaches
the stage) and is scored by ``laioncele.synth.identity_truth.score_identities`` as ``bench/names_identity_bench.py``
scores it. spaCy's entities are memoised per NER input text, so an ablation that leaves NER's input alone
costs only the rules. Each ablation is also scored on the per-caption sets (``tests/data``: labelled,
holdout). ``--merge`` writes the figures under ``names_identity.ablation`` in bench/results.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results.json"
DATA = REPO / "tests" / "data"
_ENTITIES: dict[str, list[tuple[int, int, str]]] = {}


def _rule_modules() -> list[Any]:
    """The modules whose rules an ablation switches off (names_evidence, the corpus evidence, is kept)."""
    import laioncele.names.extract as names  # noqa: PLC0415

    modules = [names]
    for name in ("names_rules", "names_prefilter", "names_confidence", "names_lexicon", "names_text"):
        with suppress(ImportError):  # a pruned module
            modules.append(__import__(f"laioncele.{name}", fromlist=["_"]))
    return modules


def _everywhere(attr: str, value: Any) -> list[tuple[Any, str, Any]]:
    return [(m, attr, value) for m in _rule_modules() if hasattr(m, attr)]


def _method(attr: str, value: Any) -> list[tuple[Any, str, Any]]:
    from laioncele.names.extract import NameExtractor  # noqa: PLC0415

    return [(NameExtractor, attr, value)] if hasattr(NameExtractor, attr) else []


def _simple_start(words: list[str], i: int, lower_case: bool, product_share: float = 0.0) -> bool:
    """The pre-filter without its surname tests: a known given name and a next word."""
    from laioncele.names.lexicon import fold, given_names  # noqa: PLC0415

    word = words[i]
    if fold(word) not in given_names() or i + 1 >= len(words):
        return False
    return lower_case or (word[0].isupper() and words[i + 1][0].isupper())


# name -> (config overrides, patches): each a rule family of the per-caption extractor switched off.
ABLATIONS: dict[str, tuple[dict[str, Any], Callable[[], list[tuple[Any, str, Any]]]]] = {
    "baseline": ({}, list),
    "confidence_model": ({"min_confidence": 0.0}, list),
    "famous_list": ({"famous_names": False}, list),
    "org_spans": ({"org_span_candidates": False}, list),
    "segment_names": ({"rescue_segments": False}, list),
    "list_neighbours": ({}, lambda: _method("_list_neighbours", lambda self, text, names: None)),
    "and_pairs": ({}, lambda: _method("_expand_and_pairs", lambda self, text, names: {})),
    "extend_span": ({}, lambda: _everywhere("extend_span", lambda text, start, end: end)),
    "split_groups": ({}, lambda: _everywhere("split_groups", lambda words: [words] if words else [])),
    "inverted_name": ({}, lambda: _everywhere("inverted_name", lambda text, start, words: None)),
    "everyday_surname": ({}, lambda: _everywhere("everyday_word_reason", lambda token: None)),
    "noun_surname": ({}, lambda: _everywhere("is_common_noun", lambda token: False)),
    "context_rules": ({}, lambda: _everywhere("context_reason", lambda tokens, text: None)),
    "brand_words": ({}, lambda: _everywhere("brand_words", frozenset)),
    "org_words": ({}, lambda: _everywhere("org_words", frozenset)),
    "colour_words": (
        {},
        lambda: _everywhere("colour_words", frozenset) + _everywhere("colour_names", frozenset),
    ),
    "recase_lower": ({}, lambda: _everywhere("recase_lower", lambda text: text)),
    "recase_upper": ({}, lambda: _everywhere("recase_upper", lambda text: text)),
    "trademark": ({}, lambda: _everywhere("trademarked", lambda text, end: False)),
    "extra_first_names": ({}, lambda: _everywhere("extra_first_names", frozenset)),
    "weak_first_name": ({}, lambda: _everywhere("rare_surname", lambda token: True)),
    "prefilter_surname_tests": ({}, lambda: _everywhere("may_start_name", _simple_start)),
    "credits": ({}, lambda: _everywhere("credit_spans", lambda text: [])),
}


def _clear_caches() -> None:
    """Drop the cached word tables, so a patched list reaches the tables built from it (the blocklist)."""
    for module in _rule_modules():
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", "").startswith(
                "laioncele"
            ):
                value.cache_clear()


@contextmanager
def ablated(name: str) -> Iterator[dict[str, Any]]:
    """Inside: the rule family ``name`` is off (patches applied); yields the names config overrides."""
    overrides, patches = ABLATIONS[name]
    with ExitStack() as stack:
        for target, attr, value in patches():
            stack.enter_context(mock.patch.object(target, attr, value))
        _clear_caches()
        try:
            yield overrides
        finally:
            _clear_caches()


@contextmanager
def memoised_entities() -> Iterator[None]:
    """spaCy's entities per NER input text, computed once for every ablation."""
    from laioncele.names.extract import NameExtractor  # noqa: PLC0415

    original = NameExtractor._entities

    def entities(self: Any, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        missing = [t for t in dict.fromkeys(texts) if t not in _ENTITIES]
        if missing:
            _ENTITIES.update(zip(missing, original(self, missing), strict=True))
        return [_ENTITIES[t] for t in texts]

    with mock.patch.object(NameExtractor, "_entities", entities):
        yield


@contextmanager
def memoised_corpus_evidence() -> Iterator[None]:
    """The corpus-evidence names (read from the ingest captions alone, no per-caption rule) computed once."""
    import pipelines.stages.names as stage  # noqa: PLC0415

    original, found = stage._corpus_evidence_names, []

    def evidence(config: Any) -> list[tuple[str, str, int]]:
        if not found:
            found.append(original(config))
        return found[0]

    with mock.patch.object(stage, "_corpus_evidence_names", evidence):
        yield


def _read(name: str) -> list[dict[str, Any]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def per_caption(overrides: dict[str, Any]) -> dict[str, float]:
    """Precision and recall on the labelled and the holdout captions (``bench/names_bench.py``'s sets)."""
    from laioncele.config import NamesConfig  # noqa: PLC0415
    from laioncele.names.extract import NameExtractor, evaluate  # noqa: PLC0415

    extractor = NameExtractor(NamesConfig(**overrides))
    out: dict[str, float] = {}
    for label, file in (("labelled", "labelled_captions.jsonl"), ("holdout", "holdout_captions.jsonl")):
        rows = _read(file)
        quality = evaluate(extractor([r["caption"] for r in rows]), [r["names"] for r in rows])
        out[f"{label}_precision"] = round(quality["precision"], 4)
        out[f"{label}_recall"] = round(quality["recall"], 4)
    return out


def identity(
    overrides: dict[str, Any], corpus: Path, ingest_root: Path, truth: dict[str, Any]
) -> dict[str, Any]:
    """ner -> names -> candidates on the ingested corpus, locally, scored against the truth."""
    from bench.names_identity_bench import candidates_from_run  # noqa: PLC0415
    from laioncele.synth.identity_truth import score_identities  # noqa: PLC0415
    from pipelines.runner import run_stage  # noqa: PLC0415
    from pipelines.stages import STAGES  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="ablation_", dir=ingest_root.parent) as tmp:
        (Path(tmp) / "ingest").symlink_to(ingest_root / "ingest")
        config = _config(corpus, Path(tmp), [f"names.{k}={json.dumps(v)}" for k, v in overrides.items()])
        start = time.perf_counter()
        for stage in ("ner", "names", "candidates"):
            run_stage(STAGES[stage], config, log=lambda _: None)
        seconds = time.perf_counter() - start
        figures = score_identities(candidates_from_run(Path(tmp)), truth, config.names.min_candidates)
    keep = ("identity_recall_5_19", "identity_recall_20_plus", "mention_recall", "purity")
    return {
        **{k: figures[k] for k in keep},
        "true_candidates": figures.get("true_candidates"),
        "false_candidates": figures.get("false_candidates"),
        "seconds": round(seconds, 1),
        "loadavg_1m": round(os.getloadavg()[0], 1),
    }


def _config(corpus: Path, root: Path, extra: list[str]) -> Any:
    from laioncele.config import load_config  # noqa: PLC0415

    return load_config(
        None,
        [
            f"input.paths=[{corpus}]",
            f"run.output_root={root}",
            "ray.executor=local",
            "ray.progress_bars=false",
            "ingest.rows_per_unit=20000",
            "shards.rows_per_shard=20000",
            "names.max_rows_per_name=100000000",
            *extra,
        ],
    )


def run(
    rows: int, names: list[str], with_identity: bool = True, with_per_caption: bool = True
) -> dict[str, Any]:
    """Figures per ablation, and each one's change against the baseline (in points)."""
    from laioncele.synth.corpus import write_corpus  # noqa: PLC0415
    from pipelines.runner import run_stage  # noqa: PLC0415
    from pipelines.stages import STAGES  # noqa: PLC0415

    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="names_ablation_") as tmp,
        memoised_entities(),
        ExitStack() as stack,
    ):
        corpus, base = Path(tmp) / "corpus", Path(tmp) / "base"
        truth = write_corpus(corpus, rows, 0, rows_per_shard=100_000) if with_identity else {}
        if with_identity:
            run_stage(STAGES["ingest"], _config(corpus, base, []), log=lambda _: None)
            stack.enter_context(memoised_corpus_evidence())
        for name in ["baseline", *[n for n in names if n != "baseline"]]:
            with ablated(name) as overrides:
                entry = per_caption(overrides) if with_per_caption else {}
                if with_identity:
                    entry.update(identity(overrides, corpus, base, truth))
            results[name] = entry
            print(name, json.dumps(entry), flush=True)
    base_entry = results["baseline"]
    for name, entry in results.items():
        if name != "baseline":
            entry["delta_points"] = {
                k: round(100 * (v - base_entry[k]), 2)
                for k, v in entry.items()
                if isinstance(v, float)
                and isinstance(base_entry.get(k), float)
                and k != "loadavg_1m"
                and k != "seconds"
            }
    return {
        "rows": rows,
        "seed": 0,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **results,
    }


def merge(result: dict[str, Any]) -> None:
    """Write ``result`` under ``names_identity.ablation`` in bench/results.json (that sub-key only)."""
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results.setdefault("names_identity", {})["ablation"] = result
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    chosen = args[1:] or list(ABLATIONS)
    flags = set(sys.argv[1:])
    result = run(
        int(args[0]) if args else 100_000,
        chosen,
        with_identity="--per-caption-only" not in flags,
        with_per_caption="--identity-only" not in flags,
    )
    print(json.dumps(result, indent=2))
    if "--merge" in sys.argv:
        merge(result)
