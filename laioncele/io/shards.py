"""Sharded Arrow IPC storage with a per-stage manifest, atomic writes and unit-level resume.

Layout of one stage directory::

    <stage_dir>/
        manifest.json              # written last: schema, config hash, shards (rows, bytes, sha256, inputs), drops
        part-<unit>-00000.arrow    # zstd-compressed Arrow IPC files, each written to a temp name then renamed
        _units/<unit>.json         # commit record of one unit of work (its shards + drop counts), for resume

A *unit* is the resumable grain of a stage (an input row-group range, an input shard). A unit is complete when
its commit record exists and every shard it lists is on disk with the recorded size; anything else is partial
and is redone from scratch, so a crash never leaves a duplicate or a missing row.

``stage_dir`` may also be an ``s3://`` URI (or a ``laioncele.io.storage.ObjectPath``): there is no rename on an
object store, so every shard, commit record and manifest is uploaded under a ``.tmp-`` key and then copied to
its final key (see ``laioncele.io.storage``); the same order (shards, then the record, the manifest last) keeps a
unit and a stage all-or-nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from laioncele.io.schema import SCHEMAS, schema_id
from laioncele.io.storage import TMP_PREFIX, ObjectPath, as_path, atomic_output, temp_key_write, temp_name

MANIFEST_NAME = "manifest.json"
UNITS_DIR = "_units"
SHARD_SUFFIX = ".arrow"
FORMAT_VERSION = 1


class ShardError(ValueError):
    """A stage directory, manifest or shard is missing, corrupt, or of an incompatible schema version."""


@dataclass(frozen=True)
class ShardRecord:
    name: str
    rows: int
    bytes: int
    sha256: str
    inputs: tuple[str, ...] = ()


@dataclass
class UnitRecord:
    """What one unit of work produced: its shards, how many rows came in, and why rows were dropped.

    The accounting: ``rows == rows_in - sum(drops) + expanded``, each counted in output rows. ``expanded`` is
    the rows a unit wrote beyond one per input row it kept (faces: an image's second and later faces); 0 for
    every stage that writes at most one row per input row."""

    unit_id: str
    config_hash: str
    rows_in: int
    shards: list[ShardRecord]
    drops: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    expanded: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UnitRecord:
        shards = [ShardRecord(**{**s, "inputs": tuple(s.get("inputs", ()))}) for s in data["shards"]]
        return cls(
            unit_id=data["unit_id"],
            config_hash=data["config_hash"],
            rows_in=int(data["rows_in"]),
            shards=shards,
            drops=dict(data.get("drops", {})),
            stats=dict(data.get("stats", {})),
            expanded=int(data.get("expanded", 0)),
        )


# ---------------------------------------------------------------------------------------------- atomic files


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename (object store: temp key + copy), so readers
    see all of it or nothing."""
    path = as_path(path)
    if isinstance(path, ObjectPath):
        temp_key_write(path, data, temp_name(path))
        return
    with atomic_output(path) as sink:
        sink.write(data)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def file_sha256(path: str | Path) -> str:
    path = as_path(path)
    if isinstance(path, ObjectPath):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_unit_id(unit_id: str) -> str:
    """Unit ids become file names: keep them short and portable."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", unit_id).strip("._")
    if not cleaned:
        raise ValueError(f"unit id {unit_id!r} has no usable characters")
    return cleaned


# ---------------------------------------------------------------------------------------------- writing


class ShardWriter:
    """Accumulates record batches and cuts them into shards of at most ``rows_per_shard`` rows / ``bytes_per_shard``
    uncompressed bytes. Each shard is written to a temp name and renamed when complete."""

    def __init__(
        self,
        out_dir: str | Path,
        schema: pa.Schema,
        prefix: str = "part",
        rows_per_shard: int = 100_000,
        bytes_per_shard: int = 512 * 1024 * 1024,
        compression: str | None = "zstd",
        inputs: Iterable[str] = (),
    ) -> None:
        self.out_dir = as_path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.prefix = prefix
        self.rows_per_shard = rows_per_shard
        self.bytes_per_shard = bytes_per_shard
        self.options = pa.ipc.IpcWriteOptions(
            compression=None if compression in (None, "none") else compression
        )
        self.inputs = tuple(inputs)
        self.records: list[ShardRecord] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        if table.schema.remove_metadata() != self.schema.remove_metadata():
            raise ShardError(
                f"batch schema does not match the shard schema {schema_id(self.schema)}:\n"
                f"got {table.schema.remove_metadata()}\nexpected {self.schema.remove_metadata()}"
            )
        for batch in table.to_batches():
            offset = 0
            while offset < batch.num_rows:
                room = self.rows_per_shard - self._pending_rows
                piece = batch.slice(offset, room)
                offset += piece.num_rows
                self._pending.append(piece)
                self._pending_rows += piece.num_rows
                self._pending_bytes += piece.nbytes
                if self._pending_rows >= self.rows_per_shard or self._pending_bytes >= self.bytes_per_shard:
                    self._flush()

    def close(self) -> list[ShardRecord]:
        if self._pending_rows:
            self._flush()
        return list(self.records)

    def _flush(self) -> None:
        name = f"{self.prefix}-{len(self.records):05d}{SHARD_SUFFIX}"
        final = self.out_dir / name
        tmp_name = temp_name(final)
        table = pa.Table.from_batches(self._pending, schema=self.schema).replace_schema_metadata(
            self.schema.metadata
        )
        if isinstance(final, ObjectPath):
            size, sha256 = self._write_object(final, tmp_name, table)
        else:
            self._write_local(final, table)
            size, sha256 = final.stat().st_size, file_sha256(final)
        self.records.append(ShardRecord(name, table.num_rows, size, sha256, self.inputs))
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def _write_local(self, final: Path, table: pa.Table) -> None:
        with atomic_output(final) as sink, pa.ipc.new_file(sink, self.schema, options=self.options) as writer:
            writer.write_table(table)

    def _write_object(self, final: ObjectPath, tmp_name: str, table: pa.Table) -> tuple[int, str]:
        """The same bytes as a local shard, serialised in memory (size and sha256 from them, no re-read),
        uploaded under a temp key and copied to the final one."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, self.schema, options=self.options) as writer:
            writer.write_table(table)
        data = sink.getvalue().to_pybytes()
        temp_key_write(final, data, tmp_name)
        return len(data), hashlib.sha256(data).hexdigest()


def write_unit(
    out_dir: str | Path,
    unit_id: str,
    data: pa.Table | Iterable[pa.RecordBatch],
    schema: pa.Schema,
    *,
    config_hash: str,
    rows_in: int,
    drops: Mapping[str, int] | None = None,
    stats: Mapping[str, Any] | None = None,
    inputs: Iterable[str] = (),
    rows_per_shard: int = 100_000,
    bytes_per_shard: int = 512 * 1024 * 1024,
    compression: str | None = "zstd",
    expanded: int = 0,
) -> UnitRecord:
    """Write one unit's output shards and then its commit record (the record is the unit's completion mark).
    ``expanded``: rows written beyond one per kept input row (``UnitRecord``)."""
    unit_id = safe_unit_id(unit_id)
    out_dir = as_path(out_dir)
    discard_partial_unit(out_dir, unit_id)
    writer = ShardWriter(
        out_dir, schema, f"part-{unit_id}", rows_per_shard, bytes_per_shard, compression, inputs
    )
    batches = [data] if isinstance(data, pa.Table) else data
    for batch in batches:
        writer.write(batch)
    record = UnitRecord(
        unit_id,
        config_hash,
        int(rows_in),
        writer.close(),
        {k: int(v) for k, v in sorted((drops or {}).items()) if v},
        dict(stats or {}),
        int(expanded),
    )
    atomic_write_json(out_dir / UNITS_DIR / f"{unit_id}.json", record.to_json())
    return record


def discard_partial_unit(out_dir: Path, unit_id: str) -> None:
    """Remove whatever an interrupted attempt of ``unit_id`` left behind (shards without a commit record)."""
    (out_dir / UNITS_DIR / f"{unit_id}.json").unlink(missing_ok=True)
    for path in out_dir.glob(f"part-{unit_id}-*{SHARD_SUFFIX}"):
        path.unlink()
    for path in out_dir.glob(f"{TMP_PREFIX}part-{unit_id}-*"):
        path.unlink()


def completed_units(out_dir: str | Path, config_hash: str, overwrite: bool = False) -> dict[str, UnitRecord]:
    """Units whose commit record and shards are all present. A record from another config is an error
    (mixing outputs of two configs would silently corrupt the stage) unless ``overwrite`` discards it."""
    out_dir = as_path(out_dir)
    units_dir = out_dir / UNITS_DIR
    done: dict[str, UnitRecord] = {}
    if not units_dir.is_dir():
        return done
    for path in sorted(units_dir.glob("*.json")):
        try:
            record = UnitRecord.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            path.unlink()  # a torn record cannot happen with atomic writes, but never trust it
            continue
        if record.config_hash != config_hash:
            if overwrite:
                discard_partial_unit(out_dir, record.unit_id)
                continue
            raise ShardError(
                f"{out_dir} holds unit {record.unit_id!r} written with config hash {record.config_hash}, "
                f"but the current config hashes to {config_hash}. To keep that partial build, write this one "
                f"elsewhere: --set run.output_root=<new directory>; to resume it, run it with the config it was "
                f"started with; only to discard it: --set run.overwrite=true"
            )
        shards_ok = all(_has_size(out_dir / s.name, s.bytes) for s in record.shards)
        if shards_ok:
            done[record.unit_id] = record
    return done


def _has_size(path: Path | ObjectPath, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def finalize_stage(
    out_dir: str | Path,
    stage: str,
    schema: pa.Schema,
    config_hash: str,
    unit_ids: Iterable[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Gather the commit records of ``unit_ids`` (in that order) into ``manifest.json`` and remove stray files."""
    out_dir = as_path(out_dir)
    done = completed_units(out_dir, config_hash)
    ids = [safe_unit_id(u) for u in unit_ids]
    missing = [u for u in ids if u not in done]
    if missing:
        raise ShardError(f"stage {stage!r} cannot be finalised: units {missing[:5]} are not complete")
    records = [done[u] for u in ids]
    manifest = build_manifest(stage, schema, config_hash, records, extra)
    keep = {s["name"] for s in manifest["shards"]}
    for path in out_dir.glob(f"*{SHARD_SUFFIX}"):
        if path.name not in keep:
            path.unlink()
    for path in out_dir.glob(f"{TMP_PREFIX}*"):
        path.unlink()
    atomic_write_json(out_dir / MANIFEST_NAME, manifest)
    return manifest


def build_manifest(
    stage: str,
    schema: pa.Schema,
    config_hash: str,
    records: list[UnitRecord],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    ident = schema_id(schema) or (stage, 0)
    drops: Counter[str] = Counter()
    stats: dict[str, Any] = {}
    for record in records:
        drops.update(record.drops)
        _add_stats(stats, record.stats)
    shards = [
        {
            "name": s.name,
            "rows": s.rows,
            "bytes": s.bytes,
            "sha256": s.sha256,
            "inputs": list(s.inputs),
            "unit": r.unit_id,
        }
        for r in records
        for s in r.shards
    ]
    return {
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "schema": {"name": ident[0], "version": ident[1]},
        "config_hash": config_hash,
        "rows_in": sum(r.rows_in for r in records),
        "rows": sum(s["rows"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "drops": dict(sorted(drops.items())),
        "expanded": sum(r.expanded for r in records),
        "stats": stats,
        "units": len(records),
        "shards": shards,
        **(dict(extra) if extra else {}),
    }


def _add_stats(total: dict[str, Any], stats: Mapping[str, Any]) -> None:
    """Sum per-unit statistics: numbers add up, nested mappings (counters) add up key by key."""
    for key, value in sorted(stats.items()):
        if isinstance(value, Mapping):
            _add_stats(total.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


def write_shards(
    data: pa.Table | Iterable[pa.RecordBatch],
    out_dir: str | Path,
    *,
    schema: pa.Schema | None = None,
    stage: str | None = None,
    config_hash: str = "",
    rows_in: int | None = None,
    drops: Mapping[str, int] | None = None,
    inputs: Iterable[str] = (),
    rows_per_shard: int = 100_000,
    bytes_per_shard: int = 512 * 1024 * 1024,
    compression: str | None = "zstd",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a table (or stream of record batches) as one stage directory: shards plus ``manifest.json``.

    Returns the manifest. Any previous content of ``out_dir`` written by this function is replaced.
    """
    if schema is None:
        if isinstance(data, pa.Table):
            schema = data.schema
        else:
            data = iter(data)
            first = next(data, None)
            if first is None:
                raise ValueError("write_shards needs a schema when given an empty stream of batches")
            schema = first.schema
            data = _chain([first], data)
    stage = stage or (schema_id(schema) or ("shards", 0))[0]
    out_dir = as_path(out_dir)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    counted = _Counting(data)
    record = write_unit(
        out_dir,
        "all",
        counted,
        schema,
        config_hash=config_hash,
        rows_in=0,
        drops=drops,
        inputs=inputs,
        rows_per_shard=rows_per_shard,
        bytes_per_shard=bytes_per_shard,
        compression=compression,
    )
    record.rows_in = counted.rows if rows_in is None else rows_in
    atomic_write_json(out_dir / UNITS_DIR / "all.json", record.to_json())
    return finalize_stage(out_dir, stage, schema, config_hash, ["all"], extra)


class _Counting:
    def __init__(self, data: pa.Table | Iterable[pa.RecordBatch]) -> None:
        self.data = [data] if isinstance(data, pa.Table) else data
        self.rows = 0

    def __iter__(self) -> Iterator[pa.Table | pa.RecordBatch]:
        for item in self.data:
            self.rows += item.num_rows
            yield item


def _chain(*iterables: Iterable[Any]) -> Iterator[Any]:
    for it in iterables:
        yield from it


# ---------------------------------------------------------------------------------------------- reading


def load_manifest(stage_dir: str | Path) -> dict[str, Any]:
    path = as_path(stage_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ShardError(
            f"{stage_dir} has no {MANIFEST_NAME}: the stage did not finish (re-run it to resume)"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ShardError(f"{path} is not valid JSON: {exc}") from None
    if "format_version" not in manifest and isinstance(manifest.get("parts"), dict):
        # The final dataset's top manifest: it lists stage directories, it is not one.
        parts = ", ".join(f"{stage_dir}/{name}" for name in manifest["parts"])
        raise ShardError(f"{stage_dir} is a dataset directory, not a stage: read one of its parts ({parts})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ShardError(
            f"{path}: manifest format {manifest.get('format_version')} != supported {FORMAT_VERSION}"
        )
    return manifest


def _open_shard(path: Path, record: Mapping[str, Any], verify: bool) -> pa.Table:
    if isinstance(path, ObjectPath):
        return _open_object_shard(path, record, verify)
    if not path.is_file():
        raise ShardError(f"shard {path} listed in the manifest is missing")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise ShardError(
            f"shard {path} is {size} bytes, the manifest says {record['bytes']} (truncated or replaced)"
        )
    if verify and file_sha256(path) != record["sha256"]:
        raise ShardError(f"shard {path} fails its sha256 checksum (corrupted)")
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShardError(f"shard {path} cannot be read as Arrow IPC: {exc}") from None


def _open_object_shard(path: ObjectPath, record: Mapping[str, Any], verify: bool) -> pa.Table:
    """One GET: size and checksum are checked on the bytes that are then parsed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ShardError(f"shard {path} listed in the manifest is missing") from None
    if len(data) != record["bytes"]:
        raise ShardError(
            f"shard {path} is {len(data)} bytes, the manifest says {record['bytes']} (truncated or replaced)"
        )
    if verify and hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise ShardError(f"shard {path} fails its sha256 checksum (corrupted)")
    try:
        return pa.ipc.open_file(pa.py_buffer(data)).read_all()
    except pa.ArrowInvalid as exc:
        raise ShardError(f"shard {path} cannot be read as Arrow IPC: {exc}") from None


def _check_schema(path: Path, table: pa.Table, manifest: Mapping[str, Any]) -> None:
    found = schema_id(table.schema)
    expected = (manifest["schema"]["name"], manifest["schema"]["version"])
    if found is not None and found != expected:
        raise ShardError(f"shard {path} has schema {found}, the manifest says {expected}")
    known = SCHEMAS.get(expected[0])
    if known is not None and schema_id(known) != expected:
        raise ShardError(
            f"{path.parent} was written with schema {expected}, this code reads {schema_id(known)}: "
            "re-run the stage with this version"
        )


def read_shard(stage_dir: str | Path, record: Mapping[str, Any], verify: bool = True) -> pa.Table:
    """Read one shard of a finished stage by its manifest record (size, checksum and schema checked)."""
    stage_dir = as_path(stage_dir)
    path = stage_dir / record["name"]
    table = _open_shard(path, record, verify)
    _check_schema(path, table, load_manifest(stage_dir))
    return table


def iter_shards(
    stage_dir: str | Path, columns: list[str] | None = None, verify: bool = True
) -> Iterator[tuple[dict[str, Any], pa.Table]]:
    """Yield (shard record, table) for every shard of a finished stage, validating each one."""
    stage_dir = as_path(stage_dir)
    manifest = load_manifest(stage_dir)
    for record in manifest["shards"]:
        path = stage_dir / record["name"]
        table = _open_shard(path, record, verify)
        _check_schema(path, table, manifest)
        if table.num_rows != record["rows"]:
            raise ShardError(f"shard {path} has {table.num_rows} rows, the manifest says {record['rows']}")
        yield record, (table.select(columns) if columns else table)


def read_shards(stage_dir: str | Path, columns: list[str] | None = None, verify: bool = True) -> pa.Table:
    """Read a finished stage as one table, checking schema version, sizes and checksums of every shard."""
    manifest = load_manifest(stage_dir)
    tables = [table for _, table in iter_shards(stage_dir, columns, verify)]
    if tables:
        return pa.concat_tables(tables)
    schema = SCHEMAS.get(manifest["schema"]["name"])
    if schema is None:
        raise ShardError(f"{stage_dir} has no shards and an unknown schema {manifest['schema']}")
    return schema.empty_table().select(columns) if columns else schema.empty_table()
