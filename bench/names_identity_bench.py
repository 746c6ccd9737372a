"""Name mining at identity level: ingest -> ner -> names -> candidates on a known-truth generated corpus.

Run: ``python -m bench names_identity`` (100k rows) or ``python -m bench.names_identity_bench ROWS [ROWS ...]``
(prints; ``--merge`` writes the figures per corpus size into bench/results.json under ``names_identity``).
The corpus is ``laioncele.synth.corpus`` (real LAION background captions, invented people with
Zipf-distributed mentions, photographer credits, distractors); figures come from
``laioncele.synth.identity_truth.score_identities``. Production names settings, except that no name is capped at
``max_rows_per_name`` (so mention recall is not bounded by the cap). Local Ray with 2 CPUs; peak RSS is sampled
every 0.2 s over the driver and every process under it (Ray's raylet, GCS and workers).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results.json"
KEY = "names_identity"
STAGES = ("ingest", "ner", "names", "candidates")


class RssSampler:
    """Peak resident memory of this process tree while a stage runs: the whole tree and its largest process."""

    def __init__(self, every_s: float = 0.2) -> None:
        import psutil  # noqa: PLC0415

        self.root = psutil.Process()
        self.every_s = every_s
        self.tree = self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil  # noqa: PLC0415

        while not self._stop.is_set():
            total = biggest = 0
            for proc in [self.root, *self.root.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                biggest = max(biggest, rss)
            self.tree, self.largest = max(self.tree, total), max(self.largest, biggest)
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def candidates_from_run(out_root: Path) -> dict[str, list[int]]:
    """Name key -> corpus rows, from the candidates stage's samples (generated URLs name their row)."""
    from laioncele.io.shards import read_shards  # noqa: PLC0415
    from laioncele.synth.corpus import row_of_url  # noqa: PLC0415

    table = read_shards(out_root / "candidates", columns=["url", "names"])
    found: dict[str, list[int]] = defaultdict(list)
    for url, names in zip(table.column("url").to_pylist(), table.column("names").to_pylist(), strict=True):
        for key in names:
            found[key].append(row_of_url(url))
    return found


def run_size(
    rows: int,
    seed: int = 0,
    overrides: tuple[str, ...] = (),
    keep: Path | None = None,
    faces: bool = False,
) -> dict[str, Any]:
    """Generate ``rows`` rows, run the four stages on local Ray (2 CPUs) and score the candidates; ``keep``: a
    folder to leave the candidates and the truth in; ``faces``: also estimate purity after faces
    (``bench.names_after_faces``, under ``after_faces``)."""
    import ray  # noqa: PLC0415

    from laioncele.config import load_config  # noqa: PLC0415
    from laioncele.synth.corpus import write_corpus  # noqa: PLC0415
    from laioncele.synth.identity_truth import score_identities  # noqa: PLC0415
    from pipelines.runner import run_stage  # noqa: PLC0415
    from pipelines.runtime import ensure_ray  # noqa: PLC0415
    from pipelines.stages import STAGES as ALL_STAGES  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="names_identity_") as tmp:
        corpus = Path(tmp) / "corpus"
        started = time.perf_counter()
        truth = write_corpus(corpus, rows, seed, rows_per_shard=100_000)
        generate_s = time.perf_counter() - started
        unit = max(5_000, rows // 20)  # >= 20 units, so both CPUs stay busy
        config = load_config(
            None,
            [
                f"input.paths=[{corpus}]",
                f"run.output_root={tmp}/out",
                "ray.num_cpus=2",
                "ray.progress_bars=false",
                f"ingest.rows_per_unit={unit}",
                f"shards.rows_per_shard={unit}",
                "names.max_rows_per_name=100000000",
                *overrides,
            ],
        )
        ensure_ray(config.ray)
        stages: dict[str, dict[str, Any]] = {}
        try:
            for name in STAGES:
                load = os.getloadavg()[0]
                with RssSampler() as rss:
                    start = time.perf_counter()
                    manifest = run_stage(ALL_STAGES[name], config, log=lambda _: None)
                    seconds = time.perf_counter() - start
                stages[name] = {
                    "seconds": round(seconds, 1),
                    "rows_in": manifest["rows_in"],
                    "rows_out": manifest["rows"],
                    "rows_per_s": round(manifest["rows_in"] / seconds, 1),
                    "peak_rss_tree_mib": round(rss.tree / 2**20),
                    "peak_rss_largest_process_mib": round(rss.largest / 2**20),
                    "loadavg_1m_at_start": round(load, 2),
                }
        finally:
            ray.shutdown()
        found = candidates_from_run(Path(tmp) / "out")
        if keep is not None:  # what scoring read, to re-score without re-running
            keep.mkdir(parents=True, exist_ok=True)
            (keep / "candidates.json").write_text(json.dumps(found))
            (keep / "truth.json").write_text(json.dumps(truth))
        figures = score_identities(found, truth, config.names.min_candidates)
        if faces:
            from bench.names_after_faces import after_faces  # noqa: PLC0415

            figures["after_faces"] = {"rows": rows, **after_faces(found, truth, config.names.min_candidates)}
    total = sum(s["seconds"] for s in stages.values())
    return {
        "rows": rows,
        "seed": seed,
        "generate_s": round(generate_s, 1),
        "pipeline_s": round(total, 1),
        "rows_per_s": round(rows / total, 1),
        "stages": stages,
        "overrides": list(overrides),
        **figures,
    }


def merge(result: dict[str, Any]) -> None:
    """Write ``result`` under results.json's ``names_identity`` key, one entry per corpus size, the rest of the
    file as it is now (``bench.results_file.merge_results``)."""
    from bench.results_file import merge_results  # noqa: PLC0415

    for size, figures in result.items():
        merge_results((KEY, size), figures)


def run(sizes: tuple[int, ...] = (100_000,)) -> dict[str, Any]:
    """What ``python -m bench`` records: the figures per corpus size (``rows_<n>``); a 1M entry already in the
    file is kept (it takes too long for every ``make bench``; ``python -m bench.names_identity_bench 1000000
    --merge`` refreshes it)."""
    kept = json.loads(RESULTS.read_text()).get(KEY, {}) if RESULTS.is_file() else {}
    # kept: other sizes and the sub-keys other benches write (names_ablation's "ablation")
    out = {k: v for k, v in kept.items() if k.startswith("rows_") or k == "ablation"}
    out.update({f"rows_{n}": run_size(n, faces=n == sizes[0]) for n in sizes})
    out["after_faces"] = out[f"rows_{sizes[0]}"].pop("after_faces")
    from bench.evidence_on_real import evidence_on_real  # noqa: PLC0415

    out["evidence_on_real"] = evidence_on_real()
    out["note"] = (
        "Known-truth corpus (laioncele.synth.corpus) through ingest -> ner -> names -> candidates on "
        "local Ray, 2 CPUs, on a machine shared with other jobs (loadavg recorded per stage). Purity leaves out "
        "background names: names found mostly in real background rows, or whose key is a 2-3 word sequence of "
        "the real source captions (truth unknown). rows_*_ablation_*: the issue-25 rules off (see 'rules'); "
        "rows_1000000: recorded once."
    )
    return out


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    extra = tuple(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--set="))
    keep_dir = next((Path(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--keep=")), None)
    for n in [int(a) for a in args] or [100_000]:
        result = run_size(n, overrides=extra, keep=keep_dir)
        result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(json.dumps(result, indent=2))
        if "--merge" in sys.argv:
            merge({f"rows_{n}": result})
