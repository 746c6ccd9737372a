"""The sample build the end-to-end tests share: `python -m pipelines run all` on ``configs/sample.yaml``, in-process.

The ``sample_build`` fixture (``tests/conftest.py``) builds it once per test session; ``test_e2e_sample`` and
``test_stage_contract`` both read that one build.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
# Smaller units than the sample default, so a fault can land between units of the faces stage.
SETS = [
    "ray.progress_bars=false",
    "download.rows_per_unit=20",
    "faces.rows_per_unit=8",
    "faces.concurrency=1",
]


def cli_args(out: Path, *extra: str) -> list[str]:
    args = ["run", "all", "--config", str(REPO / "configs" / "sample.yaml")]
    for item in [*SETS, f"run.output_root={out}", *extra]:
        args += ["--set", item]
    return args


def build(out: Path, *extra: str) -> None:
    """The sample build in-process, from the repo root: its config's relative paths are relative to the repo,
    as for `make build-dataset`."""
    old = os.getcwd()
    os.chdir(REPO)
    try:
        assert cli_main(cli_args(out, *extra)) == 0
    finally:
        os.chdir(old)
