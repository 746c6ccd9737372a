"""Config loading: YAML + overrides, and clear errors for bad keys and types."""

from __future__ import annotations

from pathlib import Path

import pytest

from laioncele.config import Config, load_config, parse_override

REPO = Path(__file__).resolve().parents[1]


def test_defaults_and_overrides_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  output_root: /tmp/x\ningest:\n  min_width: 64\n")
    config = load_config(
        path, ["ingest.min_height=32", "input.paths=[a.parquet, b.parquet]", "ray.num_cpus=2"]
    )
    assert config.run.output_root == "/tmp/x"
    assert config.ingest.min_width == 64 and config.ingest.min_height == 32
    assert config.input.paths == ["a.parquet", "b.parquet"]
    assert config.ray.num_cpus == 2


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["ingest.min_widht=3"], "ingest.min_widht"),
        (["nosuchsection.x=1"], "nosuchsection"),
        (["ingest.min_width=wide"], "ingest.min_width"),
        (["ingest.rows_per_unit=0"], "ingest.rows_per_unit"),
        (["shards.compression=gzip9"], "shards.compression"),
    ],
)
def test_bad_keys_and_types_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_config(None, overrides)


def test_bad_yaml_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("ingest:\n  min_width: 10\n  colour: blue\n")
    with pytest.raises(ValueError, match=r"ingest\.colour"):
        load_config(path)


def test_malformed_override_and_missing_file() -> None:
    with pytest.raises(ValueError, match="key=value"):
        parse_override("ingest.min_width")
    with pytest.raises(ValueError, match="does not exist"):
        load_config("/nonexistent/config.yaml")
    with pytest.raises(ValueError, match="is a value, not a section"):
        load_config(None, ["run.name=x", "run.name.sub=1"])


@pytest.mark.parametrize("name", ["sample.yaml", "laion5b.yaml"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(REPO / "configs" / name)
    assert isinstance(config, Config)


def test_section_hash_tracks_only_named_sections() -> None:
    a = load_config(None, [])
    b = load_config(None, ["names.min_candidates=9"])
    assert a.section_hash("ingest") == b.section_hash("ingest")
    assert a.section_hash("names") != b.section_hash("names")
