"""What a pipeline stage is, independent of what it computes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from laioncele.config import Config


@dataclass(frozen=True)
class Unit:
    """One resumable piece of a stage's work; ``payload`` is whatever its task needs (JSON-serialisable)."""

    unit_id: str
    payload: dict[str, Any]
    rows: int = 0


@dataclass(frozen=True)
class Resources:
    """How the stage's actor pool is sized and what each actor reserves."""

    concurrency: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass(frozen=True)
class Stage:
    """A stage: plan units from the upstream output, run ``task`` on each, collect shards under ``name``.

    ``task`` is a callable class: ``__init__(config: dict, out_dir: str, config_hash: str)`` loads models once
    per actor; ``__call__(batch)`` processes a batch of units (ids + payloads) and returns their commit records.
    ``finish`` (optional) runs on the driver after all units, e.g. for corpus-wide aggregation; it returns extra
    manifest fields.
    """

    name: str
    schema: pa.Schema
    config_sections: tuple[str, ...]
    upstream: str | None
    plan: Callable[[Config, Path | None], list[Unit]]
    task: type
    resources: Callable[[Config], Resources] = lambda config: Resources()
    finish: Callable[[Config, Path], dict[str, Any]] | None = None
    description: str = ""
    extra_sections: tuple[str, ...] = field(default=("shards",))


def units_per_shard(upstream_dir: Path | None) -> list[Unit]:
    """One unit per shard of the upstream stage, keyed by the shard's name: the usual plan of a map stage."""
    from laioncele.shards import load_manifest

    if upstream_dir is None:
        raise ValueError("units_per_shard needs an upstream stage")
    manifest = load_manifest(upstream_dir)
    return [
        Unit(record["name"].removeprefix("part-").removesuffix(".arrow"), {"shard": record}, record["rows"])
        for record in manifest["shards"]
    ]
