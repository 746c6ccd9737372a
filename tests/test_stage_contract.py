"""The stage contract, checked for every stage in the registry on the session's one sample build.

Each stage: its declared inputs are built and are what it read (their hashes feed its own, its shards name only
their shards); every shard's schema is the stage's; the drop reasons account for every input row (per unit and
in the manifest: ``rows == rows_in - sum(drops) + expanded``, ``expanded`` 0 except where a stage writes several
rows per input row); its directory holds only its shards, commit records and declared side outputs; its
prepare step is committed with the fingerprints of what it wrote. And rerunning is a no-op: a finished build
reruns without rewriting anything, and a build whose units are all committed resumes without running a unit or
redoing a prepare step, to the same manifests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from sample_build import REPO, SETS, build

from laioncele.config import Config, load_config
from laioncele.io.schema import schema_id
from laioncele.io.shards import MANIFEST_NAME, UNITS_DIR, file_sha256, load_manifest
from pipelines.runner import PREPARED_NAME, stage_config_hash, stage_dir
from pipelines.stages import ORDER, STAGES

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# Stages that write more than one row for an input row, and what the extra rows are.
EXPANDING = {"faces": "an image's second and later faces"}
# Written at the output root by `run all` itself (report, truth check, Ray's logs), not by a stage.
NOT_STAGE_OUTPUTS = {"report", "logs", "truth_check.json"}


@pytest.fixture(scope="module")
def config(sample_build: Path) -> Config:
    """The config the sample build ran with."""
    return load_config(REPO / "configs" / "sample.yaml", [*SETS, f"run.output_root={sample_build}"])


def _manifest(config: Config, name: str) -> dict:
    return load_manifest(stage_dir(config, name))


def _unit_records(config: Config, name: str) -> list[dict]:
    units = stage_dir(config, name) / UNITS_DIR
    return [json.loads(path.read_text()) for path in sorted(units.glob("*.json"))]


def _sub_manifest_shards(directory: Path) -> set[str]:
    """Shard names of the stage directory and of every side directory in it that has its own manifest."""
    names = set()
    for manifest in [directory / MANIFEST_NAME, *directory.glob(f"*/{MANIFEST_NAME}")]:
        names |= {s["name"] for s in json.loads(manifest.read_text()).get("shards", [])}
    return names


@pytest.mark.parametrize("name", ORDER)
def test_declared_inputs_are_built_and_are_what_the_stage_read(config: Config, name: str) -> None:
    stage = STAGES[name]
    manifest = _manifest(config, name)
    assert manifest["inputs"] == list(stage.inputs) and manifest["upstream"] == stage.upstream
    for upstream in stage.inputs:
        assert (stage_dir(config, upstream) / MANIFEST_NAME).is_file(), upstream
    # every declared input's build hash went into this stage's: the hash the runner gives it now is the built one
    assert manifest["config_hash"] == stage_config_hash(stage, config)
    if stage.upstream is None:
        assert {i.split("#")[0] for s in manifest["shards"] for i in s["inputs"]} == {
            str((REPO / p).resolve()) for p in config.input.paths
        }
        return
    read = set(stage.inputs)
    for upstream in stage.inputs:
        read |= _sub_manifest_shards(stage_dir(config, upstream))
    for shard in manifest["shards"]:
        assert shard["inputs"] and set(shard["inputs"]) <= read, (shard["name"], shard["inputs"])


@pytest.mark.parametrize("name", ORDER)
def test_every_shard_has_the_stage_schema(config: Config, name: str) -> None:
    stage = STAGES[name]
    manifest = _manifest(config, name)
    expected = schema_id(stage.schema)
    assert expected is not None, f"stage {name!r}: its schema carries no name and version"
    assert (manifest["schema"]["name"], manifest["schema"]["version"]) == expected
    assert manifest["shards"], f"stage {name!r} wrote no shard on the sample"
    for shard in manifest["shards"]:
        path = stage_dir(config, name) / shard["name"]
        assert file_sha256(path) == shard["sha256"], shard["name"]
        with pa.memory_map(str(path)) as source:
            found = pa.ipc.open_file(source).schema
        assert found.equals(stage.schema, check_metadata=True), (shard["name"], found, stage.schema)


@pytest.mark.parametrize("name", ORDER)
def test_drop_reasons_account_for_every_input_row(config: Config, name: str) -> None:
    manifest = _manifest(config, name)
    records = _unit_records(config, name)
    assert len(records) == manifest["units"] and manifest["rows_in"] > 0
    for record in [*records, manifest]:
        rows = (
            sum(s["rows"] for s in record["shards"]) if "unit_id" in record else record["rows"]
        )  # a commit record's rows are its shards'
        dropped = sum(record["drops"].values())
        expanded = record.get("expanded", 0)
        assert dropped == record["rows_in"] - rows + expanded, (record.get("unit_id", "manifest"), record)
        assert all(count > 0 for count in record["drops"].values()), record["drops"]
        if name not in EXPANDING:
            assert expanded == 0, (name, record.get("unit_id"))
    assert manifest["rows_in"] == sum(r["rows_in"] for r in records)
    assert manifest["expanded"] == sum(r.get("expanded", 0) for r in records)
    if name == "faces":  # the sample has images with two faces: the expansion is exercised
        stats = manifest["stats"]
        assert manifest["expanded"] == stats["faces"] - stats["images_with_faces"] > 0
        assert manifest["rows_in"] - sum(manifest["drops"].values()) == stats["images_with_faces"]


@pytest.mark.parametrize("name", ORDER)
def test_stage_directory_holds_only_shards_commits_and_declared_side_outputs(
    config: Config, name: str
) -> None:
    stage = STAGES[name]
    out_dir = stage_dir(config, name)
    manifest = _manifest(config, name)
    allowed = {MANIFEST_NAME, UNITS_DIR, *(s["name"] for s in manifest["shards"])}
    if stage.prepare is not None:
        allowed.add(PREPARED_NAME)
    outside: dict[Path, set[str]] = {}  # side outputs outside the stage directory (the dataset's root)
    for side in stage.side_outputs:
        path = side.at(out_dir).resolve()
        if path.parent == out_dir:
            allowed.add(path.name)
        else:
            outside.setdefault(path.parent, {out_dir.name} if path.parent == out_dir.parent else set())
            outside[path.parent].add(path.name)
    assert {p.name for p in out_dir.iterdir()} <= allowed
    for directory, names in outside.items():
        assert {p.name for p in directory.iterdir()} <= names, directory
    for side in stage.side_outputs:  # what the build wrote is declared, and what is declared it wrote
        if side.path != "partitions":  # identity.partitions > 1 only
            assert side.at(out_dir).exists(), side.path


@pytest.mark.parametrize("name", ORDER)
def test_prepare_step_is_committed_with_what_it_wrote(config: Config, name: str) -> None:
    stage = STAGES[name]
    out_dir = stage_dir(config, name)
    manifest = _manifest(config, name)
    if stage.prepare is None:
        assert not (out_dir / PREPARED_NAME).exists()
        assert not stage.prepared_outputs
        return
    record = json.loads((out_dir / PREPARED_NAME).read_text())
    assert record["config_hash"] == manifest["config_hash"]
    assert set(record["outputs"]) == {s.path for s in stage.prepared_outputs}
    for path, fingerprint in record["outputs"].items():
        target = out_dir / path
        target = target / MANIFEST_NAME if target.is_dir() else target
        assert file_sha256(target) == fingerprint["sha256"], path
        assert manifest["side_outputs"][path] == {"step": "prepare", **fingerprint}
    for key, value in record["fields"].items():
        assert manifest[key] == value


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file a stage wrote under the build: relative path -> (mtime_ns, sha256)."""
    return {
        str(path.relative_to(root)): (path.stat().st_mtime_ns, file_sha256(path))
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).parts[0] not in NOT_STAGE_OUTPUTS
    }


def test_rerunning_is_a_no_op(sample_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # On the shared build itself: a rerun of a finished build must leave it as it is. Publishing steps run
    # again on a finished stage (``Stage.after``); they may rewrite their files, with the same bytes.
    out = sample_build
    config = load_config(REPO / "configs" / "sample.yaml", [*SETS, f"run.output_root={out}"])
    published = {
        str(side.at(stage_dir(config, name)).resolve().relative_to(out))
        for name in ORDER
        for side in STAGES[name].side_outputs
        if side.step == "after"
    }
    before = _snapshot(out)
    capsys.readouterr()
    build(out)
    log = capsys.readouterr().out
    for name in ORDER:
        assert f"[{name}] already complete" in log, name
    after = _snapshot(out)
    assert set(after) == set(before)
    changed = {path for path in before if after[path] != before[path]}
    assert changed <= published, changed - published
    assert all(after[path][1] == before[path][1] for path in published)

    # Interrupted after every unit was committed, before any manifest (on a copy): the resume runs no unit and
    # redoes no prepare step, and writes the same manifests.
    out = tmp_path / "sample"
    shutil.copytree(sample_build, out)
    config = load_config(REPO / "configs" / "sample.yaml", [*SETS, f"run.output_root={out}"])
    manifests = {name: (stage_dir(config, name) / MANIFEST_NAME).read_bytes() for name in ORDER}
    # the stages' own commit records (a finish step may rewrite a side directory's, as the dataset's identities)
    own = [str(stage_dir(config, name).relative_to(out)) for name in ORDER]
    commits = {
        path: stamp
        for path, stamp in _snapshot(out).items()
        if any(path.startswith(f"{d}/{UNITS_DIR}/") or path == f"{d}/{PREPARED_NAME}" for d in own)
    }
    assert len(commits) == sum(json.loads(m)["units"] for m in manifests.values()) + sum(
        STAGES[n].prepare is not None for n in ORDER
    )
    for name in ORDER:
        (stage_dir(config, name) / MANIFEST_NAME).unlink()
    build(out)
    log = capsys.readouterr().out
    for name in ORDER:
        units = load_manifest(stage_dir(config, name))["units"]
        assert f"[{name}] {units} units, {units} already committed, 0 to run" in log, name
        if STAGES[name].prepare is not None:
            assert f"[{name}] prepared already" in log, name
        assert (stage_dir(config, name) / MANIFEST_NAME).read_bytes() == manifests[name], name
    now = _snapshot(out)
    assert {path: now[path] for path in commits} == commits
