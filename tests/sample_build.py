"""The embedded sample's build as the end-to-end tests run it, and its fingerprint.

``tests/conftest.py``'s session fixture ``sample_build`` builds it once, locally; the fault tests
(``test_e2e_sample.py``), the stage contract (``test_stage_contract.py``) and the object-store build
(``test_object_store.py``) all read that one build.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from laioncele.io.shards import load_manifest
from pipelines.cli import main as cli_main
from pipelines.stages import ORDER

REPO = Path(__file__).resolve().parents[1]
# Smaller units than the sample default, so a fault can land between units of the faces stage.
SETS = [
    "ray.progress_bars=false",
    "download.rows_per_unit=20",
    "faces.rows_per_unit=8",
    "faces.concurrency=1",
]
DIRS = [*ORDER[:-1], "dataset/images", "dataset/identities"]
# Shard directories a stage writes beside its own (the candidates' per-name table, the failed downloads, the
# identities table): compared too where the whole build is.
SIDE_DIRS = ["candidates/names_table", "download/failures", "identities/table"]


def cli_args(out: Any, *extra: str, config: str = "sample.yaml") -> list[str]:
    args = ["run", "all", "--config", str(REPO / "configs" / config)]
    for item in [*SETS, f"run.output_root={out}", *extra]:
        args += ["--set", item]
    return args


def fingerprint(out: Any, dirs: list[str] = DIRS) -> dict[str, list[tuple[str, int, str]]]:
    """Per stage directory: its shards' (name, rows, sha256), from the manifest."""
    return {d: [(s["name"], s["rows"], s["sha256"]) for s in load_manifest(out / d)["shards"]] for d in dirs}


def run_cli(argv: list[str]) -> int:
    """The CLI in-process, from the repo root: the configs' relative paths are relative to the repo, as for
    `make build-dataset`."""
    old = os.getcwd()
    os.chdir(REPO)
    try:
        return cli_main(argv)
    finally:
        os.chdir(old)


def build(out: Path, *extra: str) -> None:
    """The sample build (configs/sample.yaml with ``SETS`` and ``extra`` settings) into ``out``."""
    assert run_cli(cli_args(out, *extra)) == 0
