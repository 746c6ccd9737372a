"""The declared stage graph: every stage's inputs feed its config hash; ``describe`` shows the graph. No Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from laioncele.config import Config, load_config
from laioncele.io import schema
from laioncele.io.shards import finalize_stage, load_manifest, write_unit
from pipelines.cli import main as cli_main
from pipelines.describe import expected_config_hashes
from pipelines.runner import stage_config_hash, stage_dir
from pipelines.stages import ORDER, STAGES

# What each stage's task or plan reads (the stage directories it opens), checked against its declaration.
READS = {
    "ingest": set(),
    "ner": {"ingest"},
    "names": {"ingest", "ner"},
    "candidates": {"names"},
    "download": {"candidates"},
    "faces": {"download", "candidates"},
    "identities": {"faces"},
    "targets": {"identities"},
    "dataset": {"targets", "download", "faces", "identities"},
}


def _fake_build(config: Config, hashes: dict[str, str]) -> None:
    """Empty finished stages, each manifest carrying the given config hash."""
    for name, config_hash in hashes.items():
        out = stage_dir(config, name)
        write_unit(out, "u", schema.INGEST.empty_table(), schema.INGEST, config_hash=config_hash, rows_in=0)
        finalize_stage(out, name, schema.INGEST, config_hash, ["u"])


def test_every_stage_declares_each_stage_it_reads_upstream_first() -> None:
    for name in ORDER:
        stage = STAGES[name]
        assert set(stage.inputs) == READS[name], name
        assert stage.inputs[:1] == ((stage.upstream,) if stage.upstream else ()), name
        assert all(ORDER.index(i) < ORDER.index(name) for i in stage.inputs), name


def test_a_rebuilt_input_that_is_not_the_upstream_changes_the_hash(tmp_path: Path) -> None:
    """names plans from ingest but reads ner: a ner rebuilt under another config must not let a finished names
    stage count as complete (the single-upstream chain hashed ingest only)."""
    config = load_config(None, [f"run.output_root={tmp_path}"])
    _fake_build(config, {"ingest": "i1", "ner": "n1"})
    before = stage_config_hash(STAGES["names"], config)
    _fake_build(config, {"ner": "n2"})
    assert stage_config_hash(STAGES["names"], config) != before
    # faces reads candidates (the names' display forms) beside download; dataset reads download, faces and
    # identities beside targets
    _fake_build(config, {s: f"{s}1" for s in ("candidates", "download", "faces", "identities", "targets")})
    faces = stage_config_hash(STAGES["faces"], config)
    dataset = stage_config_hash(STAGES["dataset"], config)
    _fake_build(config, {"candidates": "c2"})
    assert stage_config_hash(STAGES["faces"], config) != faces
    _fake_build(config, {"download": "d2"})
    assert stage_config_hash(STAGES["dataset"], config) != dataset


def test_a_missing_declared_input_names_the_stage_to_run(tmp_path: Path) -> None:
    from laioncele.io.shards import ShardError

    config = load_config(None, [f"run.output_root={tmp_path}"])
    _fake_build(config, {"ingest": "i1"})
    with pytest.raises(ShardError, match=r"reads stage 'ner', which has not finished .*run ner"):
        stage_config_hash(STAGES["names"], config)


def test_single_input_stages_keep_the_chain_hash(tmp_path: Path) -> None:
    """ner reads only ingest: its hash is the one the single-upstream chain gave it, so its builds resume."""
    import hashlib

    config = load_config(None, [f"run.output_root={tmp_path}"])
    _fake_build(config, {"ingest": "i1"})
    own = config.section_hash("names", "shards")
    chained = hashlib.sha256(f"ner:{own}:i1".encode()).hexdigest()[:16]
    assert stage_config_hash(STAGES["ner"], config) == chained


def test_expected_hashes_match_the_hashes_of_a_build_with_that_config(tmp_path: Path) -> None:
    config = load_config(None, [f"run.output_root={tmp_path}"])
    expected = expected_config_hashes(config)
    for name in ORDER:  # build each stage with the hash the runner computes from its finished inputs
        _fake_build(config, {name: stage_config_hash(STAGES[name], config)})
        assert load_manifest(stage_dir(config, name))["config_hash"] == expected[name], name
    changed = expected_config_hashes(load_config(None, ["download.timeout_s=3"]))
    below = ORDER[ORDER.index("download") :]
    assert [n for n in ORDER if changed[n] != expected[n]] == below


def test_describe_lists_inputs_schemas_and_hashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(None, [f"run.output_root={tmp_path}"])
    _fake_build(config, {"ingest": stage_config_hash(STAGES["ingest"], config), "ner": "old"})
    assert cli_main(["describe", "--json", "--set", f"run.output_root={tmp_path}"]) == 0
    records = {r["stage"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(records) == ORDER
    assert records["dataset"]["inputs"] == ["targets", "download", "faces", "identities"]
    assert records["ingest"]["schema"]["columns"]["sample_id"] == "string"
    assert records["names"]["schema"] == {
        "name": "names_found",
        "version": 3,
        "columns": {f.name: str(f.type) for f in schema.NAMES_FOUND},
    }
    assert [records[s]["status"] for s in ("ingest", "ner", "names")] == ["complete", "stale", "missing"]
    assert records["ner"]["built_config_hash"] == "old"
    assert cli_main(["describe", "--set", f"run.output_root={tmp_path}"]) == 0
    text = capsys.readouterr().out
    assert "faces: " in text and "inputs:   download, candidates" in text
