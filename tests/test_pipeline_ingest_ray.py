"""The ingest stage on a real local Ray instance: 100k generated LAION rows, then a crash and a resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from laioncele.config import load_config
from laioncele.io.shards import UNITS_DIR, iter_shards, load_manifest, read_shards
from laioncele.offline_env import OFFLINE_ENV
from laioncele.synth.laion import write_laion_parquet
from pipelines.cli import main as cli_main
from pipelines.runner import run_stage
from pipelines.stages import STAGES

REPO = Path(__file__).resolve().parents[1]
N_ROWS = 100_000


@pytest.fixture(scope="module")
def laion_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_laion_parquet(
        tmp_path_factory.mktemp("laion") / "part-0.parquet", N_ROWS, seed=7, row_group_size=1000
    )


def overrides(parquet: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"input.paths=[{parquet}]",
        f"run.output_root={out}",
        "ingest.rows_per_unit=1000",
        "ingest.min_width=16",
        "ray.progress_bars=false",
        *extra,
    ]


def shard_fingerprint(stage_dir: Path) -> list[tuple[str, int, str]]:
    return [(s["name"], s["rows"], s["sha256"]) for s in load_manifest(stage_dir)["shards"]]


@pytest.mark.ray
def test_ingest_on_ray_then_crash_and_resume(ray_local, laion_parquet: Path, tmp_path: Path) -> None:
    # 1. An uninterrupted run on the real local Ray instance.
    config = load_config(None, overrides(laion_parquet, tmp_path / "clean"))
    manifest = run_stage(STAGES["ingest"], config)
    table = read_shards(tmp_path / "clean" / "ingest")
    assert manifest["rows_in"] == N_ROWS
    assert table.num_rows + sum(manifest["drops"].values()) == N_ROWS
    # URLs are unique within a unit; duplicates across units are merged by the names stage's per-name grouping.
    for _, shard in iter_shards(tmp_path / "clean" / "ingest"):
        assert len(shard.column("sample_id").unique()) == shard.num_rows
    assert set(manifest["drops"]) >= {"missing_url", "empty_caption", "undecodable_caption", "below_min_size"}
    assert all(s["inputs"] for s in manifest["shards"])

    # 2. The same run in a separate process, killed (SIGKILL) once a few units are committed.
    crashed = tmp_path / "crashed"
    cmd = [sys.executable, "-m", "pipelines", "run", "ingest"]
    for item in overrides(laion_parquet, crashed, "ingest.concurrency=1", "ray.num_cpus=1"):
        cmd += ["--set", item]
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    units_dir = crashed / "ingest" / UNITS_DIR
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if units_dir.is_dir() and len(list(units_dir.glob("*.json"))) >= 5:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list(units_dir.glob("*.json")))
    assert not (crashed / "ingest" / "manifest.json").exists(), "the run finished before it could be killed"
    assert 5 <= committed < 100

    # 3. Re-run: only the missing units run, and the result is byte-identical to the uninterrupted run.
    assert (
        cli_main(["run", "ingest", *sum((["--set", o] for o in overrides(laion_parquet, crashed)), [])]) == 0
    )
    assert shard_fingerprint(crashed / "ingest") == shard_fingerprint(tmp_path / "clean" / "ingest")
    assert load_manifest(crashed / "ingest")["drops"] == manifest["drops"]


def test_a_stage_module_imports_no_other_stage_dependencies() -> None:
    """A Ray worker unpickling the ingest task imports ``pipelines.stages`` first: it must not pull in torch or
    img2dataset (the download and faces stages' dependencies), which cost every worker seconds and ~400 MB."""
    code = (
        "import sys, pipelines.stages.ingest, pipelines.stages.names; "
        "print(sorted(m for m in ('torch', 'img2dataset', 'insightface', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.ray
def test_ingest_runs_as_tasks_on_the_started_workers_with_the_local_bytes(
    ray_local, laion_parquet: Path, tmp_path: Path
) -> None:
    """Ingest has no model to load: its units run as plain Ray tasks on the workers ``ray.init`` started (no
    actor pool to start per stage), and the shards are byte-identical to the single-process local executor's."""
    import ray._private.state

    local = load_config(None, overrides(laion_parquet, tmp_path / "local", "ray.executor=local"))
    run_stage(STAGES["ingest"], local, log=lambda _: None)
    before = set(ray._private.state.actors())
    for name in ("tasks", "again"):  # the second run reuses the workers' imports and built task objects
        run_stage(STAGES["ingest"], load_config(None, overrides(laion_parquet, tmp_path / name)), log=print)
        assert shard_fingerprint(tmp_path / name / "ingest") == shard_fingerprint(
            tmp_path / "local" / "ingest"
        )
        assert (
            load_manifest(tmp_path / name / "ingest")["drops"]
            == load_manifest(tmp_path / "local" / "ingest")["drops"]
        )
    started = [
        actor.get("ActorClassName", "")
        for actor_id, actor in ray._private.state.actors().items()
        if actor_id not in before
    ]
    assert not [name for name in started if "IngestTask" in name], started


@pytest.mark.ray
def test_local_ray_has_no_job_runtime_env_and_workers_inherit_the_offline_env(ray_local) -> None:
    """A local instance gets no job-level runtime_env (with one, Ray discards the workers it prestarted during
    ``ray.init`` and starts new ones for the first tasks): its workers get the offline defaults by inheriting
    the driver's environment, through the raylet this process started."""
    if os.environ.get("RAY_ADDRESS"):
        pytest.skip("connected to an existing cluster: the runtime_env carries the variables there")
    assert not ray_local.get_runtime_context().runtime_env

    @ray_local.remote(num_cpus=1)
    def worker_env() -> dict[str, str | None]:
        return {key: os.environ.get(key) for key in OFFLINE_ENV}

    assert ray_local.get(worker_env.remote()) == {key: os.environ[key] for key in OFFLINE_ENV}
