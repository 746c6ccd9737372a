"""Scale: ingest -> ner -> names -> candidates on generated LAION rows at growing sizes, on a 2-CPU local Ray.

Per stage and size: wall time, rows/s, peak RSS of the driver and of the largest Ray worker process (sampled
every 0.2 s), object-store spill bytes (Ray's memory summary, before and after the stage) and output bytes
(the manifest's shards). Each size runs in a fresh Ray instance, so the memory figures compare.

``python -m bench scale`` runs the sizes in ``SIZES``; ``python -m bench.scale_bench --rows 1000000 3000000``
runs others once and merges them into results.json under ``scale.by_rows``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SIZES = (100_000, 300_000)
STAGES = ("ingest", "ner", "names", "candidates")
RESULTS = Path(__file__).resolve().parent / "results.json"


class PeakRss:
    """Samples the RSS of this process and of each of its descendants (Ray's raylet, GCS and workers) in a
    thread; ``peaks()`` gives the driver's peak and the largest single worker's peak since ``reset()``."""

    def __init__(self, interval_s: float = 0.2) -> None:
        import psutil

        self._me = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.reset()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.driver = self.worker = 0

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            self.driver = max(self.driver, self._me.memory_info().rss)
            for child in self._me.children(recursive=True):
                try:
                    if child.name().startswith("ray::") or "default_worker" in " ".join(child.cmdline()):
                        self.worker = max(self.worker, child.memory_info().rss)
                except psutil.Error:
                    continue
            self._stop.wait(self._interval)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def spilled_bytes() -> int:
    """Bytes Ray has spilled from the object store so far in this session (0 before any spill)."""
    import ray
    from ray._private.internal_api import memory_summary

    # This driver's own instance: other Ray instances on the machine must not be asked.
    address = ray.get_runtime_context().gcs_address
    match = re.search(r"Spilled (\d+) MiB", memory_summary(address=address, stats_only=True))
    return int(match.group(1)) * 1024 * 1024 if match else 0


def run_size(n_rows: int, work: Path) -> dict[str, Any]:
    import ray

    from laioncele.config import load_config
    from laioncele.io.shards import load_manifest
    from laioncele.synth.laion import write_laion_parquet
    from pipelines.runner import run_stage, stage_dir
    from pipelines.runtime import ensure_ray
    from pipelines.stages import STAGES as ALL_STAGES

    # Generated in a child process: the generator's memory would otherwise stay in this driver's RSS.
    parquet = work / "in" / "laion.parquet"
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(write_laion_parquet, (parquet, n_rows), {"seed": 3, "row_group_size": 50_000})
    config = load_config(
        None,
        [
            f"input.paths=[{parquet}]",
            f"run.output_root={work / 'out'}",
            "ingest.rows_per_unit=100000",
            "ray.num_cpus=2",
            "ray.progress_bars=false",
            "ingest.concurrency=2",
            "names.concurrency=2",
        ],
    )
    ensure_ray(config.ray)
    sampler = PeakRss()
    stages: dict[str, Any] = {}
    try:
        for name in STAGES:
            sampler.reset()
            spilled = spilled_bytes()
            start = time.perf_counter()
            manifest = run_stage(ALL_STAGES[name], config, log=lambda _: None)
            seconds = time.perf_counter() - start
            out = stage_dir(config, name)
            stages[name] = {
                "seconds": round(seconds, 1),
                "rows_in": manifest["rows_in"],
                "rows_out": manifest["rows"],
                "rows_per_s": round(manifest["rows_in"] / seconds),
                "driver_peak_rss_mb": round(sampler.driver / 2**20),
                "worker_peak_rss_mb": round(sampler.worker / 2**20),
                "spilled_bytes": spilled_bytes() - spilled,
                "output_bytes": sum(s["bytes"] for s in load_manifest(out)["shards"]),
            }
    finally:
        sampler.close()
        ray.shutdown()
    return {"rows": n_rows, "stages": stages, "load_average_1m": round(os.getloadavg()[0], 2)}


def ratios(by_rows: dict[str, Any]) -> dict[str, Any]:
    """Each size over the size 10x smaller, keyed "10000000/1000000": time (linear means 10) and peak RSS
    (flat means ~1.0). The issue's goals read the 10M/1M pair."""
    out: dict[str, Any] = {}
    for large in sorted(by_rows, key=int):
        small = str(int(large) // 10)
        if small not in by_rows:
            continue
        pair: dict[str, Any] = {"rows_ratio": 10.0}
        for name, big in by_rows[large]["stages"].items():
            little = by_rows[small]["stages"].get(name)
            if little is None:
                continue
            pair[name] = {
                "time": round(big["seconds"] / max(little["seconds"], 1e-9), 2),
                "driver_rss": round(big["driver_peak_rss_mb"] / max(little["driver_peak_rss_mb"], 1), 2),
                "worker_rss": round(big["worker_peak_rss_mb"] / max(little["worker_peak_rss_mb"], 1), 2),
            }
        out[f"{large}/{small}"] = pair
    return out


def run(sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """The sizes given, merged with the sizes results.json already holds (a once-off 10M run is kept)."""
    previous = json.loads(RESULTS.read_text()).get("scale", {}) if RESULTS.is_file() else {}
    by_rows = dict(previous.get("by_rows", {}))
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="lc-scale-") as tmp:
            by_rows[str(n)] = run_size(n, Path(tmp))
        by_rows[str(n)]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        **{k: v for k, v in previous.items() if k == "candidates_aggregation"},  # bench.aggregation_memory's
        "by_rows": by_rows,
        "ratios": ratios(by_rows),
        "note": "Generated LAION-shaped rows (laioncele.synth.laion), 2 CPUs, one fresh local Ray per size. "
        "Worker RSS is the largest single Ray worker process.",
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", required=True, help="corpus sizes to run once")
    args = parser.parse_args()
    scale = run(tuple(args.rows))
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results["scale"] = scale
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(scale, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
