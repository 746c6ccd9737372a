"""Cluster operation: the sample built as a real Ray Job, the deployment manifests' schemas, the cost model."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from infra.local_cluster import free_ports
from infra.validate import validate_documents, validate_file
from pipelines.submit import check_config_location, pipeline_args, runtime_env

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MANIFESTS = [
    REPO / "infra" / "kuberay" / "raycluster.yaml",
    REPO / "infra" / "kuberay" / "rayjob.yaml",
    REPO / "infra" / "cluster-aws.yaml",
]


def child_env(**extra: str) -> dict[str, str]:
    """This environment with the venv first on PATH (the job's ``python`` is the venv's), no inherited
    RAY_ADDRESS, and the offline variables."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    # A throwaway head on 127.0.0.1: no token auth on either side (Ray turns it on when ~/.ray/auth_token exists).
    env.update(
        NO_ALBUMENTATIONS_UPDATE="1",
        HF_HUB_OFFLINE="1",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
    )
    env.update(extra)
    return env


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A real Ray head with the job server, on its own ports and its own temp dir.

    Its own ``--temp-dir`` keeps ``ray_current_cluster`` out of /tmp/ray, so a plain ``ray.init()`` elsewhere
    (the in-process ``ray_local`` fixture, other users) never joins this head. It runs with ``--block`` in its
    own session and is stopped by signalling that process group: ``ray stop`` would kill every Ray on the
    machine."""
    gcs_port, dashboard_port, *agent_ports = free_ports(6)
    temp_dir = tempfile.mkdtemp(prefix="lc-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    command = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        "--num-cpus=2",
        "--object-store-memory=1000000000",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--dashboard-agent-listen-port={agent_ports[0]}",
        f"--dashboard-agent-grpc-port={agent_ports[1]}",
        f"--runtime-env-agent-port={agent_ports[2]}",
        f"--metrics-export-port={agent_ports[3]}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    log = open(Path(temp_dir) / "ray-start.log", "w")  # noqa: SIM115 (closed in finally)
    head = subprocess.Popen(
        command, env=child_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + 180
        while True:  # the job server answers once the dashboard is up
            if head.poll() is not None:
                pytest.fail(
                    f"ray start exited {head.returncode}: {(Path(temp_dir) / 'ray-start.log').read_text()}"
                )
            try:
                JobSubmissionClient(address).list_jobs()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        yield address
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(head.pid, sig)  # the process group this fixture created, nothing else
            except ProcessLookupError:
                break
            try:
                head.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.slow
def test_sample_build_as_ray_job(ray_head: str, tmp_path: Path) -> None:
    """`python -m pipelines.submit` with RAY_ADDRESS set submits the sample build with `ray job submit` and
    waits; the job's driver writes the final dataset manifest under the absolute output_root."""
    output_root = tmp_path / "sample-job"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.submit",
            "--config",
            "configs/sample.yaml",
            "--set",
            f"run.output_root={output_root}",
            "--set",
            "ray.progress_bars=false",
            "--submission-id",
            f"laioncele-test-{os.getpid()}",
        ],
        cwd=REPO,
        env=child_env(RAY_ADDRESS=ray_head),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    assert f"job submit --address {ray_head} " in result.stdout  # went through `ray job submit`
    assert "SUCCEEDED" in result.stdout
    top = json.loads((output_root / "dataset" / "manifest.json").read_text())
    assert top["dataset"] == "LaionCele"
    assert top["parts"]["images"]["rows"] > 0 and top["parts"]["identities"]["rows"] > 0
    assert top["config"]["run"]["output_root"] == str(output_root)  # the --set travelled with the job
    truth = json.loads((output_root / "truth_check.json").read_text())
    assert truth["kept_images"] == top["parts"]["images"]["rows"]
    # The driver ran on the cluster from the uploaded working dir, not from this checkout's output/.
    assert not (REPO / "output" / "sample-job").exists()


def test_submit_without_address_runs_the_cli_in_process(tmp_path: Path) -> None:
    """No RAY_ADDRESS: the same command runs the pipeline here (ingest only, local executor, no sample server)."""
    out = tmp_path / "local"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.submit",
            "--config",
            "configs/sample.yaml",
            "--stage",
            "ingest",
            "--set",
            f"run.output_root={out}",
            "--set",
            "ray.executor=local",
            "--set",
            "sample_server.serve_dir=null",
        ],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "job submit" not in proc.stdout
    manifest = json.loads((out / "ingest" / "manifest.json").read_text())
    assert manifest["rows"] > 0 and manifest["rows_in"] >= manifest["rows"]
    assert not (out / "ner").exists()  # --stage ran one stage only


def test_submit_runtime_env_excludes_outputs_and_checks_config(tmp_path: Path) -> None:
    from laioncele.config import load_config

    config = load_config(REPO / "configs" / "sample.yaml", ["run.output_root=output/custom"])
    env = runtime_env(REPO, config)
    assert {".venv", ".git", "output", "output/custom"} <= set(env["excludes"])
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    bucket = runtime_env(REPO, load_config(REPO / "configs" / "sample-s3.yaml"))  # s3:// is no checkout path
    assert not [e for e in bucket["excludes"] if "s3:" in e or "laioncele-sample" in e], bucket["excludes"]
    assert check_config_location(str(REPO / "configs" / "sample.yaml"), REPO) == "configs/sample.yaml"
    outside = tmp_path / "mine.yaml"
    outside.write_text("run: {name: x}\n")
    with pytest.raises(ValueError, match="outside the working directory"):
        check_config_location(str(outside), REPO)
    assert pipeline_args("configs/sample.yaml", ["a.b=1"], "faces") == [
        "run",
        "faces",
        "--config",
        "configs/sample.yaml",
        "--set",
        "a.b=1",
    ]


# --- deployment manifests --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate(path: Path) -> None:
    assert validate_file(path) == []


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_broken_raycluster_fails_validation() -> None:
    docs = load_docs(REPO / "infra" / "kuberay" / "raycluster.yaml")
    cluster = next(d for d in docs if d["kind"] == "RayCluster")

    typo = copy.deepcopy(cluster)
    typo["spec"]["workerGroupSpecs"][0]["maxReplica"] = typo["spec"]["workerGroupSpecs"][0].pop("maxReplicas")
    errors = validate_documents([typo])
    assert any("maxReplica" in e for e in errors), errors

    bad_pod = copy.deepcopy(
        cluster
    )  # the embedded pod template is checked against Kubernetes' PodTemplateSpec
    bad_pod["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    errors = validate_documents([bad_pod])
    assert any("imagePullPolicy" in e for e in errors), errors

    inverted = copy.deepcopy(cluster)
    group = inverted["spec"]["workerGroupSpecs"][0]
    group["minReplicas"], group["maxReplicas"] = group["maxReplicas"] + 1, group["maxReplicas"]
    assert any("minReplicas" in e for e in validate_documents([inverted]))


def test_broken_rayjob_and_launcher_fail_validation() -> None:
    job = next(d for d in load_docs(REPO / "infra" / "kuberay" / "rayjob.yaml") if d["kind"] == "RayJob")
    broken = copy.deepcopy(job)
    broken["spec"]["shutdownAfterJobFinishes"] = "yes"
    assert any("shutdownAfterJobFinishes" in e for e in validate_documents([broken]))
    broken = copy.deepcopy(job)
    broken["spec"]["runtimeEnvYAML"] = "env_vars: [unclosed"
    assert any("runtimeEnvYAML" in e for e in validate_documents([broken]))

    launcher = load_docs(REPO / "infra" / "cluster-aws.yaml")[0]
    broken = copy.deepcopy(launcher)
    broken["available_node_types"]["gpu_worker"]["resources"]["GPU"] = -1
    assert validate_documents([broken], kind_hint="ray-cluster-launcher")


def test_rayjob_entrypoint_config_loads_and_points_at_staged_models() -> None:
    """The RayJob's `--set` overrides are real config keys, and every /models path it names is one that
    infra/stage_models.py stages into the image."""
    from infra.stage_models import MODELS, config_overrides
    from laioncele.config import load_config

    job = next(d for d in load_docs(REPO / "infra" / "kuberay" / "rayjob.yaml") if d["kind"] == "RayJob")
    words = job["spec"]["entrypoint"].split()
    assert words[:5] == ["python", "-m", "pipelines", "run", "all"]
    config_path = words[words.index("--config") + 1]
    overrides = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    config = load_config(REPO / config_path, overrides)
    staged = {f"/models/{m.name}" for m in MODELS}
    assert config.faces.model_dir in staged
    assert config.targets.source in staged
    # the overrides stage_models prints for training and evaluation load too, and name staged directories
    trained = load_config(REPO / config_path, config_overrides())
    assert set(trained.training.tower_models) <= staged
    assert trained.inference.eval_clip_model in staged


def test_unknown_kind_is_an_error() -> None:
    errors = validate_documents([{"apiVersion": "v1", "kind": "Nonsense", "metadata": {"name": "x"}}])
    assert errors and "Nonsense" in errors[0]


# --- cost model --------------------------------------------------------------------------------------------


def test_cost_model_from_results_alone(tmp_path: Path) -> None:
    """A fresh clone has results.json but no output/: the model still runs, labels its fallbacks, and every
    stage's figures come with the inputs they were computed from."""
    results = tmp_path / "results.json"
    shutil.copy(REPO / "bench" / "results.json", results)
    out = tmp_path / "cost_model.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cost_model",
            "--results",
            str(results),
            "--sample-root",
            str(tmp_path / "no-output"),
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    table = json.loads(out.read_text())
    assert [row["stage"] for row in table["stages"]][:2] == ["ingest", "names"]
    ingest = next(row for row in table["stages"] if row["stage"] == "ingest")
    measured = json.loads(results.read_text())["ingest"]["stage_ray_2cpu_rows_per_s"]
    # ingest CPU-hours follow from the measured Ray stage throughput per CPU
    expected = table["inputs"]["relaion5b_pairs"]["value"] / (measured / 2) / 3600
    assert ingest["cpu_hours"] == pytest.approx(expected, rel=1e-6)
    assert all(row["assumptions"] for row in table["stages"])
    assert table["funnel_source"].startswith("fallback")
    assert "fallback" in proc.stdout
