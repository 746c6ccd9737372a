"""A stage's prepare step: run before the units, committed by ``_prepared.json`` after its declared side outputs,
recorded in the manifest, and not redone by a resume. In-process (``ray.executor=local``), no Ray."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from laioncele.config import Config, load_config
from laioncele.io import schema
from laioncele.io.shards import MANIFEST_NAME, ShardError, UnitRecord, atomic_write_json, file_sha256
from pipelines.runner import PREPARED_NAME, UnitTask, run_stage
from pipelines.stage import SideOutput, Stage, Unit

CALLS: list[str] = []


def _prepare(config: Config, out_dir: Path) -> dict[str, Any]:
    CALLS.append("prepare")
    atomic_write_json(out_dir / "table.json", {"names": ["brad pitt", "tom hanks"]})
    for part in ("p0", "p1"):
        atomic_write_json(out_dir / "parts" / f"{part}.json", {"part": part})
    return {"names_prepared": 2}


def _plan(config: Config, upstream: Path | None) -> list[Unit]:
    CALLS.append("plan")
    return [Unit("u0", {}), Unit("u1", {})]


class _Task(UnitTask):
    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        names = json.loads((self.out_dir / "table.json").read_text())["names"]  # the prepare step's output
        CALLS.append(unit_id)
        return self.write(unit_id, schema.INGEST.empty_table(), schema.INGEST, len(names), {"x": 2}, [])


def _stage(**changes: Any) -> Stage:
    fields = {
        "name": "toy",
        "schema": schema.INGEST,
        "config_sections": ("names",),
        "upstream": None,
        "plan": _plan,
        "task": _Task,
        "prepare": _prepare,
        "side_outputs": (
            SideOutput("table.json", "prepare", "what the units read"),
            SideOutput("parts", "prepare", "a directory without a manifest"),
        ),
    }
    return Stage(**{**fields, **changes})


@pytest.fixture
def config(tmp_path: Path) -> Config:
    CALLS.clear()
    return load_config(None, [f"run.output_root={tmp_path}", "ray.executor=local"])


def test_prepare_runs_once_before_the_units_and_is_recorded(config: Config, tmp_path: Path) -> None:
    manifest = run_stage(_stage(), config, log=lambda _line: None)
    assert CALLS == ["prepare", "plan", "u0", "u1"]
    out = tmp_path / "toy"
    record = json.loads((out / PREPARED_NAME).read_text())
    fingerprint = {"bytes": (out / "table.json").stat().st_size, "sha256": file_sha256(out / "table.json")}
    parts = sorted((out / "parts").iterdir())
    listing = "".join(f"{p.name} {file_sha256(p)}\n" for p in parts)
    directory = {
        "bytes": sum(p.stat().st_size for p in parts),
        "sha256": hashlib.sha256(listing.encode()).hexdigest(),
    }
    assert record["outputs"] == {"table.json": fingerprint, "parts": directory}
    assert record["config_hash"] == manifest["config_hash"]
    assert manifest["side_outputs"] == {
        "table.json": {"step": "prepare", **fingerprint},
        "parts": {"step": "prepare", **directory},
    }
    assert manifest["names_prepared"] == 2  # the step's fields go into the manifest

    # Interrupted after the units, before the manifest: the resume neither prepares nor runs a unit again.
    (out / MANIFEST_NAME).unlink()
    CALLS.clear()
    lines: list[str] = []
    assert run_stage(_stage(), config, log=lines.append) == manifest
    assert CALLS == ["plan"]
    assert "[toy] prepared already (parts, table.json): not redone" in lines


def test_a_prepare_output_lost_or_cut_short_is_prepared_again(config: Config, tmp_path: Path) -> None:
    run_stage(_stage(), config, log=lambda _line: None)
    out = tmp_path / "toy"
    (out / MANIFEST_NAME).unlink()
    (out / "table.json").write_text("{}")  # another size than recorded
    CALLS.clear()
    run_stage(_stage(), config, log=lambda _line: None)
    assert CALLS == ["prepare", "plan"]  # the units were committed already
    assert json.loads((out / "table.json").read_text())["names"] == ["brad pitt", "tom hanks"]


def test_a_prepare_record_of_another_config_is_refused(config: Config, tmp_path: Path) -> None:
    run_stage(_stage(), config, log=lambda _line: None)
    (tmp_path / "toy" / MANIFEST_NAME).unlink()
    other = load_config(None, [f"run.output_root={tmp_path}", "ray.executor=local", "names.min_candidates=9"])
    with pytest.raises(ShardError, match=r"prepare step's outputs for config hash .* run\.overwrite=true"):
        run_stage(_stage(), other, log=lambda _line: None)


def test_a_prepare_step_must_write_what_it_declares(config: Config) -> None:
    stage = _stage(side_outputs=(SideOutput("table.json", "prepare"), SideOutput("other.json", "prepare")))
    with pytest.raises(ShardError, match=r"stage 'toy': its prepare step did not write .*'other.json'"):
        run_stage(stage, config, log=lambda _line: None)
    with pytest.raises(ValueError, match=r"has a prepare step but declares no side output"):
        _stage(side_outputs=())
    with pytest.raises(ValueError, match=r"step 'plan' is not one of"):
        SideOutput("x.json", "plan")
