"""The sample build as a Ray Job on a real 3-node Ray cluster on this machine, and the faults a cluster has.

One cluster (``infra.local_cluster``: a head and two worker nodes, each its own raylet with one CPU and its own
temp dir) serves every test. The clean build is the reference; each fault test starts from copies of the
reference's stages before ``faces`` (as tests/test_e2e_sample.py does), so its time goes where the fault is:
- a worker node's raylet SIGKILLed while faces runs: the job, or a rerun of it, ends byte-identical;
- the job's driver SIGKILLed while faces runs, then the job resubmitted: byte-identical;
- the whole head node SIGKILLed while faces runs: a rerun on a fresh cluster resumes from the committed units.
Only processes this module started are signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local_cluster import (
    LocalCluster,
    add_worker,
    free_ports,
    kill_node,
    node_processes,
    raylet_pid,
    start_cluster,
    stop_cluster,
)
from laioncele.io.shards import UNITS_DIR, load_manifest
from pipelines.stages import ORDER
from tests.sample_build import SETS, fingerprint
from tests.test_e2e_sample import copy_stages

REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def sample_copy(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The embedded sample served on a free port of its own (its URLs name the port): config overrides. The
    default port 8765 may be held by another build on this machine."""
    from laioncele.synth.sample import build_sample

    root = tmp_path_factory.mktemp("sample")
    shutil.copytree(REPO / "sample" / "images", root / "images")
    shutil.copy(REPO / "sample" / "laion_captions_9600.parquet", root)
    port = free_ports(1)[0]
    metadata, truth = build_sample(root, port=port)
    return [
        f"input.paths=[{metadata}]",
        f"sample_server.serve_dir={root}",
        f"sample_server.truth={truth}",
        f"sample_server.port={port}",
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    started = start_cluster(tmp_path_factory.mktemp("cluster"), workers=2, cpus_per_node=1)
    try:
        yield started
    finally:
        stop_cluster(started)


def submit(
    cluster: LocalCluster, out: Path, job_id: str, sample: list[str], wait: bool = True
) -> subprocess.CompletedProcess:
    """``python -m pipelines.submit`` of the sample build to the cluster's job server (the runbook's path)."""
    args = [
        sys.executable,
        "-m",
        "pipelines.submit",
        "--config",
        "configs/sample.yaml",
        "--submission-id",
        job_id,
    ]
    for item in [*SETS, *sample, f"run.output_root={out}"]:
        args += ["--set", item]
    if not wait:
        args.append("--no-wait")
    env = {**os.environ, "RAY_ADDRESS": cluster.job_address, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


def job_status(cluster: LocalCluster, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.job_address).get_job_status(job_id).value


def wait_for_job(cluster: LocalCluster, job_id: str, timeout_s: float = 900) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := job_status(cluster, job_id)) not in TERMINAL:
        assert time.monotonic() < deadline, f"job {job_id} still {status} after {timeout_s:.0f} s"
        time.sleep(2)
    return status


def wait_for_units(stage_path: Path, count: int, timeout_s: float = 600) -> None:
    """Until ``count`` units of the stage are committed (the fault then lands mid-stage)."""
    units = stage_path / UNITS_DIR
    deadline = time.monotonic() + timeout_s
    while not (units.is_dir() and len(list(units.glob("*.json"))) >= count):
        assert time.monotonic() < deadline, f"fewer than {count} units committed under {units}"
        time.sleep(0.1)
    assert not (stage_path / "manifest.json").exists(), "the stage finished before the fault"


def job_driver(cluster: LocalCluster, marker: str) -> int:
    """The PID of the job's Python driver whose command line holds ``marker`` (its output root), among the
    head's descendants: Ray runs the entrypoint through a shell, in a session of its own, under the head's job
    supervisor. The Python process, not the shell, is the driver."""
    import psutil

    for pid in node_processes(cluster.head):
        try:
            process = psutil.Process(pid)
            argv = process.cmdline()
        except psutil.NoSuchProcess:
            continue
        if (
            process.name().startswith("python")
            and argv[1:4] == ["-m", "pipelines", "run"]
            and marker in argv[-1]
        ):
            return pid
    raise LookupError(f"no job driver for {marker}")


@pytest.fixture(scope="module")
def reference(
    cluster: LocalCluster, sample_copy: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("clean") / "sample"
    result = submit(cluster, out, f"lc-clean-{os.getpid()}", sample_copy)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return out


def test_sample_build_runs_as_a_job_on_three_nodes(cluster: LocalCluster, reference: Path) -> None:
    from ray.util.state import list_nodes

    alive = [n for n in list_nodes(address=cluster.gcs_address) if n.state == "ALIVE"]
    assert len(alive) == 3 and sum(n.resources_total.get("CPU", 0) for n in alive) == 3
    top = load_manifest(reference / "dataset" / "images")
    assert top["rows"] > 0
    assert load_manifest(reference / "dataset" / "identities")["rows"] > 0


def test_worker_raylet_killed_mid_stage(
    cluster: LocalCluster, reference: Path, sample_copy: list[str], tmp_path: Path
) -> None:
    """Ray retries the units of actors lost with the node (on the surviving nodes); if the job fails instead,
    the rerun resumes. Either way the output is identical to the clean build."""
    out = tmp_path / "sample"
    copy_stages(reference, out, ORDER[: ORDER.index("faces")])
    job = f"lc-raylet-{os.getpid()}"
    assert submit(cluster, out, job, sample_copy, wait=False).returncode == 0
    wait_for_units(out / "faces", 1)
    victim = cluster.workers[0]
    os.kill(raylet_pid(victim), signal.SIGKILL)
    status = wait_for_job(cluster, job)
    print(f"after the raylet kill the job ended {status}")
    kill_node(victim)  # what is left of that node
    cluster.nodes.remove(victim)
    add_worker(cluster)  # back to three nodes for the next tests
    if status != "SUCCEEDED":
        result = submit(cluster, out, f"{job}-rerun", sample_copy)
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert fingerprint(out) == fingerprint(reference)


def test_driver_killed_mid_stage_then_resubmitted(
    cluster: LocalCluster, reference: Path, sample_copy: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "sample"
    copy_stages(reference, out, ORDER[: ORDER.index("faces")])
    job = f"lc-driver-{os.getpid()}"
    assert submit(cluster, out, job, sample_copy, wait=False).returncode == 0
    wait_for_units(out / "faces", 1)
    os.kill(job_driver(cluster, str(out)), signal.SIGKILL)
    assert wait_for_job(cluster, job) == "FAILED"
    result = submit(cluster, out, f"{job}-rerun", sample_copy)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "[faces]" in result.stdout and "already committed" in result.stdout
    assert fingerprint(out) == fingerprint(reference)


def test_head_killed_then_resumed_on_a_fresh_cluster(
    cluster: LocalCluster, reference: Path, sample_copy: list[str], tmp_path: Path
) -> None:
    """Last: it takes the module's cluster down. Nothing survives the head (GCS, job server, driver); the
    committed units on disk do, and a fresh cluster's job resumes from them."""
    out = tmp_path / "sample"
    copy_stages(reference, out, ORDER[: ORDER.index("faces")])
    job = f"lc-head-{os.getpid()}"
    assert submit(cluster, out, job, sample_copy, wait=False).returncode == 0
    wait_for_units(out / "faces", 1)
    kill_node(cluster.head)
    committed = len(list((out / "faces" / UNITS_DIR).glob("*.json")))
    stop_cluster(cluster)  # the worker nodes lost their head: stop them too

    fresh = start_cluster(tmp_path / "fresh", workers=2, cpus_per_node=1)
    try:
        result = submit(fresh, out, f"{job}-fresh", sample_copy)
    finally:
        stop_cluster(fresh)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert committed >= 1
    line = next(x for x in result.stdout.splitlines() if x.startswith("[faces]") and "already committed" in x)
    assert int(line.split(",")[1].split()[0]) >= committed, line
    assert fingerprint(out) == fingerprint(reference)
