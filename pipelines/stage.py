"""What a pipeline stage is, independent of what it computes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
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
    # No model to load: run units as plain Ray tasks on the workers Ray already started (no actor start-up,
    # imports kept from one stage to the next), at most ``concurrency`` at once (pipelines.task_pool).
    tasks: bool = False


# The steps of a stage that may write side outputs, in the order the runner runs them.
SIDE_OUTPUT_STEPS = ("prepare", "units", "finish", "after")


@dataclass(frozen=True)
class SideOutput:
    """A file or directory a stage writes beside its shards, relative to its directory (``..`` climbs out of
    it: the dataset's images directory sits inside the dataset root). ``step``: which step writes it, one of
    ``SIDE_OUTPUT_STEPS``; a ``units`` output is written by every unit's task (one part per unit)."""

    path: str
    step: str
    description: str = ""

    def __post_init__(self) -> None:
        if self.step not in SIDE_OUTPUT_STEPS:
            raise ValueError(
                f"side output {self.path!r}: step {self.step!r} is not one of {SIDE_OUTPUT_STEPS}"
            )

    def at(self, out_dir: Any) -> Any:
        """Where it lies for a stage directory (a ``Path`` or an ``s3://`` ``ObjectPath``)."""
        path = out_dir
        for part in PurePosixPath(self.path).parts:
            path = path.parent if part == ".." else path / part
        return path


@dataclass(frozen=True)
class Stage:
    """A stage: plan units from the upstream output, run ``task`` on each, collect shards under ``name``.

    The steps, in the order the runner runs them:

    - ``prepare`` (optional): corpus-wide preparation on the driver before any unit (the names stage's known
      names, the candidates' per-name table): ``prepare(config, out_dir)`` writes the stage's ``prepare`` side
      outputs and returns extra manifest fields. The runner commits it with ``_prepared.json`` (config hash,
      each output's bytes and sha256, the fields), written last; a resume whose record matches skips it.
    - ``plan``: pure, it only lists the units (from the upstream's manifest and the config); it writes nothing.
    - ``task``: a callable class: ``__init__(config: dict, out_dir: str, config_hash: str)`` loads models once
      per actor; ``__call__(batch)`` processes a batch of units (ids + payloads) and returns their commit records.
    - ``finish`` (optional) runs on the driver after all units, before the manifest; it returns extra manifest
      fields.
    - ``after`` (optional) runs after the manifest is written (and when the stage is found complete).

    ``side_outputs`` declares every file or directory any step writes beside the shards (``SideOutput``);
    ``python -m pipelines describe`` lists them and the stage contract test checks a build holds nothing else.

    ``upstream`` is the stage whose output ``plan`` splits into units; ``inputs`` names every stage whose output
    the stage reads (``upstream`` first; it defaults to just ``upstream``). Every input's config hash goes into
    this stage's hash, so the stage graph is a declared DAG, not a chain that is right only by its order.
    """

    name: str
    schema: pa.Schema
    config_sections: tuple[str, ...]
    upstream: str | None
    plan: Callable[[Config, Path | None], list[Unit]]
    task: type
    resources: Callable[[Config], Resources] = lambda config: Resources()
    finish: Callable[[Config, Path], dict[str, Any]] | None = None
    prepare: Callable[[Config, Path], dict[str, Any]] | None = None
    side_outputs: tuple[SideOutput, ...] = ()
    # Runs after the manifest is written (and when the stage is found complete): publishing steps.
    after: Callable[[Config], Any] | None = None
    description: str = ""
    extra_sections: tuple[str, ...] = field(default=("shards",))
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        declared = ((self.upstream,) if self.upstream else ()) + tuple(self.inputs)
        object.__setattr__(self, "inputs", tuple(dict.fromkeys(declared)))  # upstream first, no repeats
        if self.prepare is not None and not self.prepared_outputs:
            raise ValueError(f"stage {self.name!r} has a prepare step but declares no side output it writes")

    @property
    def prepared_outputs(self) -> tuple[SideOutput, ...]:
        """The side outputs the ``prepare`` step writes."""
        return tuple(s for s in self.side_outputs if s.step == "prepare")


def units_per_shard(upstream_dir: Path | None, rows_per_unit: int | None = None) -> list[Unit]:
    """One unit per shard of the upstream stage (or per ``rows_per_unit`` rows of it), keyed by the shard's name:
    the usual plan of a map stage. Slow stages (download, faces) use smaller units, so a crash loses less."""
    from laioncele.io.shards import load_manifest

    if upstream_dir is None:
        raise ValueError("units_per_shard needs an upstream stage")
    units = []
    for record in load_manifest(upstream_dir)["shards"]:
        stem = record["name"].removeprefix("part-").removesuffix(".arrow")
        step = rows_per_unit or max(record["rows"], 1)
        for start in range(0, max(record["rows"], 1), step):
            stop = min(start + step, record["rows"])
            unit_id = stem if step >= record["rows"] else f"{stem}-r{start:08d}"
            units.append(Unit(unit_id, {"shard": record, "start": start, "stop": stop}, stop - start))
    return units


def read_unit_rows(stage_dir: Path, payload: dict[str, Any]) -> pa.Table:
    """The rows of a unit planned by ``units_per_shard``."""
    from laioncele.io.shards import read_shard

    table = read_shard(stage_dir, payload["shard"])
    start = payload.get("start", 0)
    return table.slice(start, payload.get("stop", table.num_rows) - start)
