"""Run a stage resumably over a Ray Data actor pool.

Each unit's task writes its own shards and commit record atomically, so the driver only has to (1) skip units
that are already committed, (2) map the rest, (3) gather the commit records into ``manifest.json``. A crash at any
point loses at most the units in flight; re-running redoes exactly those. A stage's corpus-wide ``prepare`` step
runs first and is committed the same way (``_prepared.json``, written after its side outputs), so a resume does
not redo it; ``plan`` only lists units.
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
from laioncele.io.shards import (
    MANIFEST_NAME,
    ShardError,
    UnitRecord,
    atomic_write_json,
    completed_units,
    file_sha256,
    finalize_stage,
    load_manifest,
    safe_unit_id,
    write_unit,
)
from laioncele.io.storage import ObjectPath, as_path, configure
from pipelines.interrupts import Interrupted
from pipelines.progress import StageProgress
from pipelines.runtime import ensure_ray
from pipelines.stage import Stage
from pipelines.task_pool import run_units_as_tasks


class StageFailed(RuntimeError):
    """Some units raised; the rest are committed, and a re-run retries only the failed ones."""


# The commit record of a stage's prepare step: its config hash, each side output's bytes and sha256, its fields.
PREPARED_NAME = "_prepared.json"

# Stages whose directory is not their name: the final dataset's images sit beside its identities.
STAGE_PATHS = {"dataset": "dataset/images"}


def stage_dir(config: Config, name: str) -> Path | ObjectPath:
    """Absolute, because Ray workers do not share the driver's working directory (or an ``s3://`` prefix)."""
    return (config.output_root / STAGE_PATHS.get(name, name)).resolve()


def stage_config_hash(stage: Stage, config: Config) -> str:
    """Hash of this stage's config sections chained with the hashes every input stage was built with: a changed
    config of any stage it reads invalidates it (and, through the chain, every stage below it)."""
    hashes = []
    for name in stage.inputs:
        input_dir = stage_dir(config, name)
        if not (input_dir / MANIFEST_NAME).is_file():
            raise ShardError(
                f"stage {stage.name!r} reads stage {name!r}, which has not finished under "
                f"{input_dir}: run `python -m pipelines run {name}` (or `run all`) first"
            )
        hashes.append(load_manifest(input_dir)["config_hash"])
    return chain_config_hash(stage, config, hashes)


def chain_config_hash(stage: Stage, config: Config, input_hashes: list[str]) -> str:
    """The stage's hash given its inputs' hashes (in ``stage.inputs`` order); with one input it is the hash the
    single-upstream chain has always had, so builds of the stages that read one stage keep their hash."""
    own = config.section_hash(*stage.config_sections, *stage.extra_sections)
    return hashlib.sha256(f"{stage.name}:{own}:{':'.join(input_hashes)}".encode()).hexdigest()[:16]


def config_mismatch_message(stage: Stage, out_dir: Path | ObjectPath, built: str | None, current: str) -> str:
    """Why a finished stage is not reused, and the safe way on: a new output root keeps the old build (the
    overwrite switch discards it, so it comes last)."""
    sections = ", ".join([*stage.config_sections, *stage.extra_sections])
    read = ", ".join(repr(name) for name in stage.inputs)
    upstream = f" and the hashes of the stages it reads ({read})" if stage.inputs else ""
    return (
        f"stage {stage.name!r} under {out_dir} was built with config hash {built}; the current config hashes to "
        f"{current} (the hash covers config sections {sections}{upstream}). To keep that build, write this one "
        f"elsewhere: --set run.output_root=<new directory>. To resume that build, run it with the config it was "
        f"built with. Only to discard it: --set run.overwrite=true"
    )


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
        expanded: int = 0,
    ) -> UnitRecord:
        """Write this unit's shards and commit record with the configured shard sizes. ``drops`` counts input
        rows by why they were dropped, so ``rows == rows_in - sum(drops) + expanded`` (``UnitRecord``)."""
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
            expanded=expanded,
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
    """Run ``stage`` to completion (resuming committed units) and return its manifest.

    Ctrl-C or SIGTERM raise ``Interrupted`` saying where the stage stopped (the CLI prints it in one line)."""
    try:
        return _run_stage(stage, config, log)
    except KeyboardInterrupt as exc:
        raise Interrupted.at(exc, f"stage {stage.name!r}") from None


def _run_stage(stage: Stage, config: Config, log: Callable[[str], None] = print) -> dict[str, Any]:
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
                config_mismatch_message(stage, out_dir, manifest.get("config_hash"), config_hash)
            )
        (out_dir / MANIFEST_NAME).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)

    prepared = _prepare(stage, config, out_dir, config_hash, log)
    units = stage.plan(config, stage_dir(config, stage.upstream) if stage.upstream else None)
    ids = [safe_unit_id(u.unit_id) for u in units]
    if len(set(ids)) != len(ids):
        raise ValueError(f"stage {stage.name!r} planned duplicate unit ids")
    done = completed_units(out_dir, config_hash, overwrite=config.run.overwrite)
    pending = [u for u, uid in zip(units, ids, strict=True) if uid not in done]
    log(f"[{stage.name}] {len(units)} units, {len(done)} already committed, {len(pending)} to run")

    failures: dict[str, str] = {}
    if pending:
        try:
            failures = _map_units(stage, config, out_dir, config_hash, pending)
        except KeyboardInterrupt as exc:
            now_done = completed_units(out_dir, config_hash)
            committed = sum(uid in now_done for uid in ids)
            raise Interrupted.at(
                exc, f"stage {stage.name!r}, {committed} of {len(units)} units committed"
            ) from None
    if failures:
        first = next(iter(failures.items()))
        raise StageFailed(
            f"stage {stage.name!r}: {len(failures)} of {len(units)} units failed (the others are committed; "
            f"re-run to retry). First: {first[0]}: {first[1]}"
        )

    extra: dict[str, Any] = {"upstream": stage.upstream, "inputs": list(stage.inputs)}
    extra.update(prepared.get("fields", {}))
    if stage.finish is not None:
        extra.update(stage.finish(config, out_dir))
    if stage.side_outputs:
        extra["side_outputs"] = _side_outputs_manifest(stage, out_dir, prepared)
    manifest = finalize_stage(out_dir, stage.name, stage.schema, config_hash, ids, extra)
    if stage.after is not None:
        stage.after(config)
    _log_summary(stage, manifest, time.monotonic() - started, log)
    return manifest


def _prepare(
    stage: Stage, config: Config, out_dir: Path, config_hash: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """Run the stage's ``prepare`` step unless its commit record (``_prepared.json``) says it is done for this
    config hash with every output intact; return the record. The record is written after all the outputs, so a
    crash mid-prepare leaves none and the resume redoes the step; a record of another config is an error, as a
    unit's is (``completed_units``), unless ``run.overwrite`` discards it."""
    if stage.prepare is None:
        return {}
    saved = out_dir / PREPARED_NAME
    if saved.is_file():
        record = json.loads(saved.read_text())
        if record.get("config_hash") == config_hash and _outputs_intact(
            stage, out_dir, record.get("outputs", {})
        ):
            log(f"[{stage.name}] prepared already ({', '.join(record['outputs'])}): not redone")
            return record
        if record.get("config_hash") != config_hash and not config.run.overwrite:
            raise ShardError(
                f"{out_dir} holds the prepare step's outputs for config hash {record.get('config_hash')}, but the "
                f"current config hashes to {config_hash}. To keep that partial build, write this one elsewhere: "
                f"--set run.output_root=<new directory>; to resume it, run it with the config it was started "
                f"with; only to discard it: --set run.overwrite=true"
            )
        saved.unlink()
    fields = stage.prepare(config, out_dir)
    missing = [s.path for s in stage.prepared_outputs if not s.at(out_dir).exists()]
    if missing:
        raise ShardError(
            f"stage {stage.name!r}: its prepare step did not write its declared outputs {missing}"
        )
    outputs = {s.path: _fingerprint(s.at(out_dir)) for s in stage.prepared_outputs}
    record = {"config_hash": config_hash, "outputs": outputs, "fields": dict(fields)}
    atomic_write_json(saved, record)
    return record


def _fingerprint(path: Path | ObjectPath) -> dict[str, Any]:
    """Bytes and sha256 of a side output: of the file; of a directory's ``manifest.json`` (which lists the
    sha256 of every shard in it); of a directory without one, its files' total bytes and the sha256 of their
    sorted "path sha256" lines."""
    if not path.is_dir():
        return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    if (path / MANIFEST_NAME).is_file():
        return _fingerprint(path / MANIFEST_NAME)
    files = _files_under(path)
    listing = "".join(f"{name} {file_sha256(file)}\n" for name, file in files)
    return {"bytes": _size(path), "sha256": hashlib.sha256(listing.encode()).hexdigest()}


def _size(path: Path | ObjectPath) -> int:
    """The bytes ``_fingerprint`` records for a side output (raises FileNotFoundError when it is not there)."""
    if not path.is_dir():
        return path.stat().st_size
    if (path / MANIFEST_NAME).is_file():
        return (path / MANIFEST_NAME).stat().st_size
    return sum(file.stat().st_size for _, file in _files_under(path))


def _files_under(path: Path | ObjectPath, prefix: str = "") -> list[tuple[str, Path | ObjectPath]]:
    """Every file below a directory, with its path relative to it, sorted."""
    files = []
    for child in sorted(path.iterdir(), key=lambda p: p.name):
        name = f"{prefix}{child.name}"
        files.extend(_files_under(child, f"{name}/") if child.is_dir() else [(name, child)])
    return files


def _outputs_intact(stage: Stage, out_dir: Path, outputs: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether every prepare output is recorded and there with its recorded size (as ``completed_units`` checks
    shards)."""
    for output in stage.prepared_outputs:
        recorded = outputs.get(output.path)
        try:
            if recorded is None or _size(output.at(out_dir)) != recorded["bytes"]:
                return False
        except FileNotFoundError:
            return False
    return True


def _side_outputs_manifest(stage: Stage, out_dir: Path, prepared: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``side_outputs``: each declared side output the steps up to ``finish`` wrote, with the step
    and its fingerprint (the prepare step's as committed in its record)."""
    recorded = prepared.get("outputs", {})
    side: dict[str, Any] = {}
    for output in stage.side_outputs:
        if output.step == "after":  # written after the manifest
            continue
        path = output.at(out_dir)
        if output.path in recorded:
            side[output.path] = {"step": output.step, **recorded[output.path]}
        elif path.exists():
            side[output.path] = {"step": output.step, **_fingerprint(path)}
    return side


def _map_units(
    stage: Stage, config: Config, out_dir: Path, config_hash: str, pending: list
) -> dict[str, str]:
    if config.ray.executor == "local":
        return _run_units_locally(stage, config, out_dir, config_hash, pending)
    ensure_ray(config.ray)
    resources = stage.resources(config)
    items = [{"unit_id": safe_unit_id(u.unit_id), "payload": json.dumps(u.payload)} for u in pending]
    if resources.tasks:
        return _map_units_as_tasks(stage, config, out_dir, config_hash, items)
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        stage.task,
        fn_constructor_kwargs={
            "config": config.model_dump(mode="json"),
            "out_dir": str(out_dir),
            "config_hash": config_hash,
        },
        batch_size=1,
        # A fixed-size pool: every actor starts (and loads its models) at once, instead of the autoscaler adding
        # the second actor only after the first has a backlog.
        compute=ray.data.ActorPoolStrategy(size=max(1, min(resources.concurrency, len(items)))),
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


def _map_units_as_tasks(
    stage: Stage, config: Config, out_dir: Path, config_hash: str, items: list[dict[str, str]]
) -> dict[str, str]:
    """A stage with no model to load: its units as Ray tasks on the started workers (``pipelines.task_pool``)."""
    resources = stage.resources(config)
    rows = run_units_as_tasks(
        stage.task,
        json.dumps(config.model_dump(mode="json")),
        str(out_dir),
        config_hash,
        items,
        concurrency=resources.concurrency,
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus,
    )
    failures: dict[str, str] = {}
    with _progress(stage, config, len(items)) as progress:
        for row in rows:
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
    expanded = f" ({manifest['expanded']} beyond one per input row)" if manifest.get("expanded") else ""
    log(
        f"[{stage.name}] done in {seconds:.1f}s ({rate:,.1f} rows/s): rows in {manifest['rows_in']}, "
        f"out {manifest['rows']}{expanded}, "
        f"{len(manifest['shards'])} shards; dropped: {drops}"
    )
