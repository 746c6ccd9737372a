"""End to end on the embedded sample, on a real local Ray instance: truth, fault tolerance, determinism.

One clean build is the reference. A second build is killed (SIGKILL of the driver) during the faces stage and
re-run: it must produce byte-identical shards. A third has a Ray worker killed while it runs faces: Ray restarts
the actor and retries the unit, and the output is again identical. Runs 2 and 3 start from copies of the
reference's finished upstream stages, so the test spends its time where the faults are.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sample_build import DIRS, REPO, build, cli_args, fingerprint, run_cli

from laioncele.config import load_config
from laioncele.io.shards import UNITS_DIR, load_manifest
from pipelines.runner import stage_dir
from pipelines.stages import ORDER

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def copy_stages(src: Path, dst: Path, stages: list[str]) -> None:
    for name in stages:
        shutil.copytree(src / name, dst / name)


@pytest.fixture(scope="module")
def reference(sample_build: Path) -> Path:
    """The session's one clean sample build (``tests/conftest.py``): the reference every fault run matches."""
    return sample_build


def test_sample_build_holds_the_true_identities(reference: Path) -> None:
    truth = json.loads((reference / "truth_check.json").read_text())
    assert truth["precision"] >= 0.95, truth["wrong_examples"]
    assert truth["recall"] >= 0.8
    # The people with >= 3 clean photos in the sample; mislabelled rows must not have created anyone else.
    assert {"Angelina Jolie", "Katy Perry", "Scarlett Johansson", "Jennifer Aniston", "Matt Damon"} <= set(
        truth["identities"]
    )
    top = json.loads((reference / "dataset" / "manifest.json").read_text())
    assert top["parts"]["images"]["rows"] == truth["kept_images"]
    assert (reference / "dataset" / "mean_name_embedding.npy").is_file()
    card = (reference / "dataset" / "README.md").read_text()  # the dataset card, written by the build
    assert card.startswith("---\n") and f"{truth['kept_images']}" in card
    assert (reference / "report" / "index.html").is_file()
    download = load_manifest(reference / "download")
    assert download["drops"]["http_404"] > 0 and download["drops"]["decode_error"] >= 1
    assert load_manifest(reference / "faces")["drops"]["no_face"] >= 3


def test_driver_killed_mid_faces_then_resumed_is_byte_identical(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "sample"
    copy_stages(reference, out, ORDER[: ORDER.index("faces")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines", *cli_args(out, "ray.num_cpus=1")],
        cwd=REPO,
        env={**os.environ, "RAY_ADDRESS": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    units = out / "faces" / UNITS_DIR
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if units.is_dir() and len(list(units.glob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "faces" / "manifest.json").exists(), "faces finished before the driver was killed"

    build(out)
    assert fingerprint(out) == fingerprint(reference)
    assert load_manifest(out / "dataset" / "images") == load_manifest(reference / "dataset" / "images")


def test_ray_worker_killed_during_faces_is_retried(ray_local, reference: Path, tmp_path: Path) -> None:
    import psutil

    out = tmp_path / "sample"
    copy_stages(reference, out, ORDER[: ORDER.index("faces")])
    units = stage_dir(load_config(None, [f"run.output_root={out}"]), "faces") / UNITS_DIR
    killed: list[int] = []

    def kill_a_faces_worker() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            if units.is_dir() and list(units.glob("*.json")):
                # Ray names its worker processes after the actor: "ray::MapWorker(MapBatches(FacesTask))".
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    if "FacesTask" in " ".join(proc.info["cmdline"] or []):
                        os.kill(proc.info["pid"], signal.SIGKILL)
                        killed.append(proc.info["pid"])
                        return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_faces_worker, daemon=True)
    killer.start()
    build(out)
    killer.join(timeout=5)
    assert killed, "no faces worker was found to kill"
    assert fingerprint(out) == fingerprint(reference)


def test_notebook_runs_on_the_built_sample(reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbclient
    import nbformat

    monkeypatch.setenv("LAIONCELE_RUN_DIR", str(reference))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = REPO / "notebooks" / "dataset_stats.ipynb"
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "Angelina Jolie" in text


def test_train_encoder_on_the_built_sample(reference: Path, tmp_path: Path) -> None:
    """`make train-encoder` on the sample: tiny towers (configs/sample.yaml), the export loads on its own."""
    from encoder_training.__main__ import main as train_main
    from encoder_training.export import load_exported

    out = tmp_path / "train"
    argv = [
        "train",
        "--config",
        str(REPO / "configs" / "sample.yaml"),
        "--set",
        f"run.output_root={reference}",
        "--set",
        f"training.output_dir={out}",
        "--set",
        "training.epochs=2",
    ]
    assert train_main(argv) == 0
    exports = list(out.rglob("head.safetensors"))
    assert exports, f"no export under {out}"
    model, config, mean = load_exported(exports[0].parent)
    assert mean.shape == (config["num_tokens"], config["embedding_dim"])


def test_identity_partitions_on_ray_keep_the_single_task_result(reference: Path, tmp_path: Path) -> None:
    """identity.partitions = 3: three partition units and a merge on Ray, each partition task reading only its
    own faces, give the same identities and images as the single-task run."""
    out = tmp_path / "sample"
    copy_stages(reference, out, ORDER[: ORDER.index("identities")])
    args = cli_args(out, "identity.partitions=3")
    args[1] = "identities"
    assert run_cli(args) == 0
    from laioncele.io.shards import read_shards  # noqa: PLC0415

    def kept(directory: Path) -> set[tuple[str, int, str]]:
        images = read_shards(directory / "identities", columns=["sample_id", "face_index", "identity_id"])
        table = read_shards(directory / "identities" / "table", columns=["identity_id", "name"])
        name_of = dict(zip(*(table.column(c).to_pylist() for c in ("identity_id", "name")), strict=True))
        columns = (images.column(c).to_pylist() for c in ("sample_id", "face_index", "identity_id"))
        return {(s, f, name_of[i]) for s, f, i in zip(*columns, strict=True)}

    assert kept(out) == kept(reference) and kept(out)
    assert len(list((out / "identities" / "partitions").glob("part-*"))) == 3


def test_two_clean_runs_produce_identical_manifests(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "sample"
    build(out)
    for directory in DIRS:
        assert load_manifest(out / directory) == load_manifest(reference / directory), directory
    top, ref = (json.loads((d / "dataset" / "manifest.json").read_text()) for d in (out, reference))
    for manifest in (top, ref):
        del manifest["config"]["run"]["output_root"]  # the only intended difference
    assert top == ref
