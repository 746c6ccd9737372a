"""The whole pipeline on the embedded sample, on local Ray: rows/s end to end and each stage's share of time."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from laioncele.config import load_config
from laioncele.io.shards import load_manifest

REPO = Path(__file__).resolve().parents[1]


def run() -> dict:
    import ray

    from pipelines.runner import run_stage, stage_dir
    from pipelines.runtime import ensure_ray
    from pipelines.sample_server import serve_directory
    from pipelines.stages import ORDER, STAGES

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            REPO / "configs" / "sample.yaml",
            [
                f"run.output_root={tmp}/sample",
                f"input.paths=[{REPO / 'sample' / 'metadata.parquet'}]",
                "ray.progress_bars=false",
            ],
        )
        started = time.perf_counter()
        ensure_ray(config.ray)
        startup = time.perf_counter() - started
        seconds: dict[str, float] = {}
        rows: dict[str, dict[str, int]] = {}
        with serve_directory(REPO / "sample", config.sample_server.port):
            for name in ORDER:
                start = time.perf_counter()
                manifest = run_stage(STAGES[name], config, log=lambda _: None)
                seconds[name] = time.perf_counter() - start
                rows[name] = {"in": manifest["rows_in"], "out": manifest["rows"]}
        total = sum(seconds.values())
        input_rows = load_manifest(stage_dir(config, "ingest"))["rows_in"]
        ray.shutdown()
    return {
        "input_rows": input_rows,
        "ray_startup_s": round(startup, 1),
        "total_s": round(total, 1),
        "rows_per_s": round(input_rows / total, 1),
        "stage_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "stage_time_share": {k: round(v / total, 3) for k, v in seconds.items()},
        "stage_rows": rows,
        "note": "Embedded sample (9,680 LAION-shaped rows, 69 downloadable images) on local Ray with 2 CPUs; "
        "faces use the offline dlib backend on CPU. Per-stage times include Ray Data start-up per stage, which "
        "dominates at this size.",
    }
