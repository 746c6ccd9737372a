"""The download stage in the pipeline: killed mid-way, re-run, the same sample_ids with no duplicates.

Runs the sample's stages up to ``candidates`` in-process (local executor), then the download stage in a child
process against the sample's local HTTP server, killed with SIGKILL once a few units are committed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from laioncele.io.shards import UNITS_DIR, load_manifest, read_shards
from pipelines.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
SETS = ["ray.executor=local", "ray.progress_bars=false", "download.rows_per_unit=8", "download.concurrency=1"]


def args(stage: str, out: Path) -> list[str]:
    result = ["run", stage, "--config", str(REPO / "configs" / "sample.yaml")]
    for item in [*SETS, f"run.output_root={out}"]:
        result += ["--set", item]
    return result


def run(*stages: str, out: Path) -> None:
    """Run stages in-process from the repo root (the sample config's paths are relative to it)."""
    old = os.getcwd()
    os.chdir(REPO)
    try:
        for stage in stages:
            assert cli_main(args(stage, out)) == 0
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dl") / "sample"
    run("ingest", "ner", "names", "candidates", out=out)
    return out


def test_download_killed_midway_resumes_to_the_same_samples(upstream: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines", *args("download", upstream)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    units = upstream / "download" / UNITS_DIR
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if units.is_dir() and len(list(units.glob("*.json"))) >= 3:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = {p.name: p.stat().st_mtime_ns for p in units.glob("*.json")}
    assert not (upstream / "download" / "manifest.json").exists(), "download finished before the kill"

    run("download", out=upstream)
    manifest = load_manifest(upstream / "download")
    resumed = read_shards(upstream / "download").column("sample_id").to_pylist()
    assert len(resumed) == len(set(resumed)), "a sample was downloaded twice"
    failures = read_shards(upstream / "download" / "failures").column("sample_id").to_pylist()
    candidates = read_shards(upstream / "candidates").column("sample_id").to_pylist()
    # Every candidate ends exactly once: stored, or recorded as a failure with its reason.
    assert sorted(resumed + failures) == sorted(candidates)
    assert manifest["rows"] + sum(manifest["drops"].values()) == manifest["rows_in"] == len(candidates)
    # Units committed before the kill were not redone: their commit records are the first run's files.
    assert committed and all((units / name).stat().st_mtime_ns == mtime for name, mtime in committed.items())

    # And the result is the same as an uninterrupted download of the same rows.
    clean = upstream.parent / "clean"
    clean.mkdir()
    for stage in ("ingest", "ner", "names", "candidates"):
        os.symlink(upstream / stage, clean / stage, target_is_directory=True)
    run("download", out=clean)
    assert [s["sha256"] for s in load_manifest(clean / "download")["shards"]] == [
        s["sha256"] for s in manifest["shards"]
    ]
