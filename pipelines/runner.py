"""Run a stage resumably over a Ray Data actor pool.

Each unit's task writes its own shards and commit record atomically, so the driver only has to (1) skip units
that are already committed, (2) map the rest, (3) gather the commit records into ``manifest.json``. A crash at any
point loses at most the units in flight; re-running redoes exactly those.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray

from laioncele.config import Config
from laioncele.shards import (
    MANIFEST_NAME,
    ShardError,
    UnitRecord,
    completed_units,
    finalize_stage,
    load_manifest,
    safe_unit_id,
    write_unit,
)
from laioncele.storage import ObjectPath, as_path, configure
from pipelines.progress import StageProgress
from pipelines.runtime import ensure_ray
from pipelines.stage import Stage


class StageFailed(RuntimeError):
    """Some units raised; the rest are committed, and a re-run retries only the failed ones."""


# Stages whose directory is not their name: the final dataset's images sit beside its identities.
STAGE_PATHS = {"dataset": "dataset/images"}


def stage_dir(config: Config, name: str) -> Path | ObjectPath:
    """Absolute, because Ray workers do not share the driver's working directory (or an ``s3://`` prefix)."""
    return (config.output_root / STAGE_PATHS.get(name, name)).resolve()


def stage_config_hash(stage: Stage, config: Config) -> str:
    """Hash of this stage's config sections chained with the upstream stage's hash: a changed upstream
    config invalidates every stage below it."""
    own = config.section_hash(*stage.config_sections, *stage.extra_sections)
    upstream = ""
    if stage.upstream:
        upstream_dir = stage_dir(config, stage.upstream)
        if not (upstream_dir / MANIFEST_NAME).is_file():
            raise ShardError(
                f"stage {stage.name!r} reads stage {stage.upstream!r}, which has not finished under "
                f"{upstream_dir}: run `python -m pipelines run {stage.upstream}` (or `run all`) first"
            )
        upstream = load_manifest(upstream_dir)["config_hash"]
    return hashlib.sha256(f"{stage.name}:{own}:{upstream}".encode()).hexdigest()[:16]


class UnitTask:
    """Base of every stage's task class: Ray Data calls it with a batch of units; it processes each one and
    returns one commit record (or error) per unit. Subclasses load models in ``__init__`` and implement
    ``process``."""

    def __init__(self, config: dict[str, Any], out_dir: str, config_hash: str) -> None:
        self.config = Config.model_validate(config)
        configure(self.config.storage)  # s3:// inputs and outputs resolve against the configured endpoint
        self.out_dir = as_path(out_dir, self.config.storage)
        self.config_hash = config_hash

    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        raise NotImplementedError

    def write(
        self,
        unit_id: str,
        table: pa.Table,
        schema: pa.Schema,
        rows_in: int,
        drops: Mapping[str, int],
        inputs: list[str],
        stats: dict[str, Any] | None = None,
        out_dir: Path | None = None,
    ) -> UnitRecord:
        """Write this unit's shards and commit record with the configured shard sizes."""
        shards = self.config.shards
        return write_unit(
            out_dir or self.out_dir,
            unit_id,
            table,
            schema,
            config_hash=self.config_hash,
            rows_in=rows_in,
            drops=drops,
            stats=stats,
            inputs=inputs,
            rows_per_shard=shards.rows_per_shard,
            bytes_per_shard=shards.bytes_per_shard,
            compression=shards.compression,
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        records, errors = [], []
        for unit_id, payload in zip(batch["unit_id"], batch["payload"], strict=True):
            try:
                record = self.process(str(unit_id), json.loads(str(payload)))
                records.append(json.dumps(record.to_json()))
                errors.append("")
            except Exception as exc:  # one broken unit must not take the stage down; it is reported
                records.append("")
                errors.append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
        return {"unit_id": [str(u) for u in batch["unit_id"]], "record": records, "error": errors}


def run_stage(stage: Stage, config: Config, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``stage`` to completion (resuming committed units) and return its manifest."""
    started = time.monotonic()
    configure(config.storage)
    out_dir = stage_dir(config, stage.name)
    config_hash = stage_config_hash(stage, config)
    if (out_dir / MANIFEST_NAME).is_file():
        manifest = load_manifest(out_dir)
        if manifest.get("config_hash") == config_hash:
            log(f"[{stage.name}] already complete ({manifest['rows']} rows): skipping")
            if stage.after is not None:
                stage.after(config)
            return manifest
        if not config.run.overwrite:
            raise ShardError(
                f"{out_dir} was built with config hash {manifest.get('config_hash')}, the current config hashes "
                f"to {config_hash}. Delete it or set run.overwrite=true."
            )
        (out_dir / MANIFEST_NAME).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)

    upstream_dir = stage_dir(config, stage.upstream) if stage.upstream else None
    units = stage.plan(config, upstream_dir)
    ids = [safe_unit_id(u.unit_id) for u in units]
    if len(set(ids)) != len(ids):
        raise ValueError(f"stage {stage.name!r} planned duplicate unit ids")
    done = completed_units(out_dir, config_hash, overwrite=config.run.overwrite)
    pending = [u for u, uid in zip(units, ids, strict=True) if uid not in done]
    log(f"[{stage.name}] {len(units)} units, {len(done)} already committed, {len(pending)} to run")

    failures: dict[str, str] = {}
    if pending:
        failures = _map_units(stage, config, out_dir, config_hash, pending)
    if failures:
        first = next(iter(failures.items()))
        raise StageFailed(
            f"stage {stage.name!r}: {len(failures)} of {len(units)} units failed (the others are committed; "
            f"re-run to retry). First: {first[0]}: {first[1]}"
        )

    extra: dict[str, Any] = {"upstream": stage.upstream}
    if stage.finish is not None:
        extra.update(stage.finish(config, out_dir))
    manifest = finalize_stage(out_dir, stage.name, stage.schema, config_hash, ids, extra)
    if stage.after is not None:
        stage.after(config)
    _log_summary(stage, manifest, time.monotonic() - started, log)
    return manifest


def _map_units(
    stage: Stage, config: Config, out_dir: Path, config_hash: str, pending: list
) -> dict[str, str]:
    if config.ray.executor == "local":
        return _run_units_locally(stage, config, out_dir, config_hash, pending)
    ensure_ray(config.ray)
    resources = stage.resources(config)
    items = [{"unit_id": safe_unit_id(u.unit_id), "payload": json.dumps(u.payload)} for u in pending]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        stage.task,
        fn_constructor_kwargs={
            "config": config.model_dump(mode="json"),
            "out_dir": str(out_dir),
            "config_hash": config_hash,
        },
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(
            min_size=1, max_size=max(1, min(resources.concurrency, len(items)))
        ),
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus or None,
        # Ray Data restarts a killed actor and retries its unit (max_restarts=-1 by default for actor pools);
        # the retried unit rewrites its shards from scratch, so nothing is duplicated.
    )
    failures: dict[str, str] = {}
    with _progress(stage, config, len(items)) as progress:
        for row in dataset.iter_rows():
            if row["error"]:
                failures[row["unit_id"]] = row["error"]
            progress.advance(_rows_in(row["record"]))
    return failures


def _run_units_locally(
    stage: Stage, config: Config, out_dir: Path, config_hash: str, pending: list
) -> dict[str, str]:
    task = stage.task(config.model_dump(mode="json"), str(out_dir), config_hash)
    failures: dict[str, str] = {}
    with _progress(stage, config, len(pending)) as progress:
        for unit in pending:
            result = task({"unit_id": [safe_unit_id(unit.unit_id)], "payload": [json.dumps(unit.payload)]})
            if result["error"][0]:
                failures[result["unit_id"][0]] = result["error"][0]
            progress.advance(_rows_in(result["record"][0]))
    return failures


def _progress(stage: Stage, config: Config, total_units: int) -> StageProgress:
    return StageProgress(
        stage.name, total_units, enabled=config.ray.progress_bars, interval_s=config.ray.progress_interval_s
    )


def _rows_in(record: str) -> int:
    """Input rows of a unit's commit record (0 for a failed unit, which has none)."""
    return int(json.loads(record)["rows_in"]) if record else 0


def _log_summary(stage: Stage, manifest: dict[str, Any], seconds: float, log: Callable[[str], None]) -> None:
    drops = ", ".join(f"{k}={v}" for k, v in manifest["drops"].items()) or "none"
    rate = manifest["rows_in"] / seconds if seconds > 0 else 0.0
    log(
        f"[{stage.name}] done in {seconds:.1f}s ({rate:,.1f} rows/s): rows in {manifest['rows_in']}, "
        f"out {manifest['rows']}, "
        f"{len(manifest['shards'])} shards; dropped: {drops}"
    )
