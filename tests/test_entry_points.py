"""Every entry point sets the offline environment defaults before any dependency that reads them is imported.

Each case runs in a fresh interpreter whose environment lacks the variables (this test process already has them,
from conftest). An import spy records the environment at the moment each watched dependency is first imported:
``huggingface_hub`` reads ``HF_HUB_OFFLINE`` at import, albumentations checks for updates at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from laioncele.offline_env import OFFLINE_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]

SPY = """
import importlib, importlib.abc, json, os, runpy, sys
KEYS, WATCH = {keys!r}, ("huggingface_hub", "albumentations", "transformers", "ray", "torch", "pyarrow")
seen = {{}}

class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top in WATCH and top not in seen:
            seen[top] = {{k: os.environ.get(k) for k in KEYS}}
        return None

sys.meta_path.insert(0, Spy())
kind, target = {kind!r}, {target!r}
try:
    if kind == "module":
        sys.argv = [target, "--help"]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        module, function = target.split(":")
        getattr(importlib.import_module(module), function)(["--help"])
except SystemExit:
    pass
print("SPY" + json.dumps({{"seen": seen, "final": {{k: os.environ.get(k) for k in KEYS}}}}))
"""


def console_scripts() -> dict[str, str]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def run_spied(kind: str, target: str, extra_env: dict[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV}
    env.update({"PYTHONPATH": str(REPO_ROOT), **(extra_env or {})})
    code = SPY.format(keys=sorted(OFFLINE_ENV), kind=kind, target=target)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    marker = [line for line in done.stdout.splitlines() if line.startswith("SPY")]
    assert marker, f"{target} produced no report; stderr:\n{done.stderr[-3000:]}"
    return json.loads(marker[-1][3:])


def test_the_console_script_is_the_pipeline_cli() -> None:
    assert console_scripts() == {"laioncele": "pipelines.cli:main"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("module", "pipelines"),
        ("module", "pipelines.submit"),
        ("module", "encoder_training"),
        ("module", "inference"),
        ("module", "bench"),
        *[("script", target) for target in console_scripts().values()],
    ],
)
def test_entry_point_sets_the_offline_defaults_before_importing_dependencies(kind: str, target: str) -> None:
    report = run_spied(kind, target)
    assert report["final"] == OFFLINE_ENV
    if target != "bench":  # bench's --help imports no dependency; its benchmarks do, later
        assert report["seen"], f"{target} imported none of the watched dependencies: the check saw nothing"
    for dependency, env in report["seen"].items():
        assert env == OFFLINE_ENV, f"{target} imported {dependency} before the offline defaults were set"


def test_a_value_the_user_exported_wins() -> None:
    report = run_spied("module", "inference", {"HF_HUB_OFFLINE": "0"})
    assert report["final"] == {**OFFLINE_ENV, "HF_HUB_OFFLINE": "0"}
