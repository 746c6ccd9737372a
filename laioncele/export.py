"""Trainer-ready exports of the final dataset: WebDataset tars, a Hugging Face ``datasets`` directory, parquet.

All three read ``dataset/images`` and ``dataset/identities`` shard by shard (checksums verified) and write one
row per dataset image (one kept face of one identity):

- ``webdataset``: ``laioncele-NNNNNN.tar`` with ``{key}.jpg`` (or ``.webp``/``.png``: the bytes as stored,
  never re-encoded), ``{key}.json`` (name, identity id, caption, bbox, landmarks, source URL, LAION's licence
  field when the dataset carries one) and ``{key}.npy`` (the 8x2048 float16 target), plus ``wids.json``, the
  shard index ``wids`` opens for random access.
- ``hf``: the directory ``datasets.Dataset.save_to_disk`` writes (``data-NNNNN.arrow`` + ``state.json`` +
  ``dataset_info.json``), with typed features: ``Image`` for the image, ``Array2D`` for the target.
- ``parquet``: ``laioncele-NNNNN.parquet`` with the same columns and the same features in the schema
  metadata, so ``load_dataset("parquet", ...)`` decodes them as ``hf`` does and any parquet reader reads them.

The target travels with every sample rather than as an identity id into a side table: a streaming loader
(shuffled tars from an object store, many workers) then needs no random-access lookup and no per-worker copy
of the identities table, and a sample is self-contained for removal. It costs 32 KiB per sample (float16, as
stored; about the size of one 384 px JPEG); the ``identity_id`` in every row still joins to
``dataset/identities`` for anyone who prefers the table.

Files are cut when they reach ``shard_bytes`` (image + target bytes), each written to a temp name and renamed
(``laioncele.io.shards.atomic_write_bytes``: temp key + copy on an object store; the ``hf`` format is local
only). ``export.json``, written last, lists the files with rows, bytes and sha256, and the rows skipped and
why; ``dataset/exports.json`` records where each format was exported, so ``remove`` finds every export.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from laioncele.io.schema import SCHEMAS
from laioncele.io.shards import (
    MANIFEST_NAME,
    TMP_PREFIX,
    atomic_write_bytes,
    atomic_write_json,
    iter_shards,
    load_manifest,
    read_shards,
)
from laioncele.io.storage import ObjectPath, as_path

FORMATS = ("webdataset", "hf", "parquet")
EXPORT_MANIFEST = "export.json"
EXPORTS_REGISTRY = "exports.json"  # in dataset/: format -> export directory
WIDS_INDEX = "wids.json"
HF_STATE = "state.json"
HF_INFO = "dataset_info.json"
# LAION's licence column where a dataset carries it (LAION-400M ships ``LICENSE``; most rows say "?").
LICENCE_FIELDS = ("license",)
# dataset/images columns an export carries (the face embedding stays in the Arrow dataset).
EXPORTED_COLUMNS = (
    "sample_id",
    "identity_id",
    "url",
    "caption",
    "image",
    "width",
    "height",
    "bbox",
    "landmarks",
    "similarity",
    "language",
)
FILE_PATTERNS = {"webdataset": "laioncele-*.tar", "hf": "data-*.arrow", "parquet": "laioncele-*.parquet"}
# Per-sample bytes other than image and target (json, tar headers): only for cutting files to size.
ROW_OVERHEAD = 1024


@dataclass
class ExportRow:
    """One sample as every format writes it."""

    key: str
    identity_id: str
    image: bytes
    image_format: str  # "jpg", "webp" or "png": the file extension in a tar
    meta: dict[str, Any]
    target: np.ndarray  # float16 [num_tokens, embedding_dim]

    @property
    def size(self) -> int:
        return len(self.image) + self.target.nbytes + ROW_OVERHEAD


@dataclass
class ExportReport:
    """What one export wrote and what it skipped (reason -> rows)."""

    format: str
    out_dir: str
    rows_in: int = 0
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    target_shape: list[int] = field(default_factory=list)
    source_manifest_sha256: str = ""
    removed: dict[str, int] = field(default_factory=dict)  # rows taken out later by ``remove``

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
        return (
            f"{self.format}: {self.rows} of {self.rows_in} rows in {len(self.files)} files under {self.out_dir}; "
            f"skipped: {skipped}"
        )


# ---------------------------------------------------------------------------------------------- reading


def image_format(data: bytes) -> str | None:
    """The container of encoded image bytes, from their magic numbers (None: not an image we export)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False
    return True


class _Targets:
    """identity_id -> (name, float16 target), over the identities table's flat value buffer (no per-row copy)."""

    def __init__(self, identities: pa.Table) -> None:
        self.index = {iid: i for i, iid in enumerate(identities.column("identity_id").to_pylist())}
        self.names = identities.column("name").to_pylist()
        self.num_tokens = identities.column("num_tokens").to_pylist()
        self.dims = identities.column("embedding_dim").to_pylist()
        column = identities.column("name_embedding").combine_chunks()
        self.offsets = column.offsets.to_numpy()
        self.values = column.values.to_numpy(zero_copy_only=False)
        self.shape = (int(self.num_tokens[0]), int(self.dims[0])) if self.names else (0, 0)

    def get(self, identity_id: str) -> tuple[str, np.ndarray] | str:
        """(name, target) or the reason there is none."""
        i = self.index.get(identity_id)
        if i is None:
            return "no_target"
        flat = self.values[self.offsets[i] : self.offsets[i + 1]]
        shape = (int(self.num_tokens[i]), int(self.dims[i]))
        if shape != self.shape or flat.size != shape[0] * shape[1]:
            return "bad_target_shape"
        return self.names[i], flat.reshape(shape)


def iter_rows(
    dataset_dir: str | Path | ObjectPath, skipped: Counter[str], verify_images: bool = True
) -> tuple[tuple[int, int], Iterator[ExportRow]]:
    """(target shape, rows) of a built dataset; every row left out is counted in ``skipped`` by reason."""
    dataset_dir = as_path(dataset_dir)
    targets = _Targets(
        read_shards(
            dataset_dir / "identities",
            columns=["identity_id", "name", "num_tokens", "embedding_dim", "name_embedding"],
        )
    )

    def rows() -> Iterator[ExportRow]:
        seen: set[str] = set()
        for _, table in iter_shards(dataset_dir / "images"):
            present = [f for f in LICENCE_FIELDS if f in table.column_names]
            for row in table.select([*EXPORTED_COLUMNS, *present]).to_pylist():
                found = targets.get(row["identity_id"])
                fmt = image_format(row["image"])
                reason = _skip_reason(row, found, fmt, seen, verify_images)
                if reason is not None:
                    skipped[reason] += 1
                    continue
                assert fmt is not None and not isinstance(found, str)
                seen.add(row["sample_id"])
                name, target = found
                meta = {
                    "key": row["sample_id"],
                    "identity_id": row["identity_id"],
                    "name": name,
                    "caption": row["caption"],
                    "url": row["url"],
                    "width": row["width"],
                    "height": row["height"],
                    "bbox": row["bbox"],
                    "landmarks": row["landmarks"],
                    "similarity": row["similarity"],
                    "language": row["language"],
                    "image_format": fmt,
                    **{f: row[f] for f in present},
                }
                yield ExportRow(row["sample_id"], row["identity_id"], row["image"], fmt, meta, target)

    return targets.shape, rows()


def _skip_reason(
    row: dict[str, Any], found: tuple[str, np.ndarray] | str, fmt: str | None, seen: set[str], verify: bool
) -> str | None:
    if isinstance(found, str):
        return found
    if row["sample_id"] in seen:
        return "duplicate_key"  # a WebDataset key names one sample
    if fmt is None:
        return "unknown_image_format"
    if verify and not _decodes(row["image"]):
        return "undecodable_image"
    return None


def _chunks(rows: Iterable[ExportRow], shard_bytes: int) -> Iterator[list[ExportRow]]:
    chunk: list[ExportRow] = []
    size = 0
    for row in rows:
        chunk.append(row)
        size += row.size
        if size >= shard_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------------------------- encoding


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def encode_tar(rows: list[ExportRow]) -> bytes:
    """A WebDataset shard: the members of one sample adjacent, deterministic headers (same input, same bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for row in rows:
            _tar_member(tar, f"{row.key}.{row.image_format}", row.image)
            _tar_member(tar, f"{row.key}.json", json.dumps(row.meta, sort_keys=True).encode())
            _tar_member(tar, f"{row.key}.npy", _npy(row.target))
    return buffer.getvalue()


def hf_features(target_shape: tuple[int, int], licence_fields: Iterable[str] = ()) -> Any:
    """The ``datasets`` features of the hf and parquet exports (datasets is imported only when exporting)."""
    import datasets

    value = datasets.Value
    return datasets.Features(
        {
            "key": value("string"),
            "image": datasets.Image(),
            "identity_id": value("string"),
            "name": value("string"),
            "caption": value("string"),
            "url": value("string"),
            "width": value("int32"),
            "height": value("int32"),
            "bbox": datasets.Sequence(value("float32"), length=4),
            "landmarks": datasets.Sequence(value("float32"), length=10),
            "similarity": value("float32"),
            "language": value("string"),
            "image_format": value("string"),
            **{f: value("string") for f in licence_fields},
            "target": datasets.Array2D(shape=tuple(target_shape), dtype="float16"),
        }
    )


def hf_table(rows: list[ExportRow], features: Any) -> pa.Table:
    """Rows as an Arrow table in the ``datasets`` layout (Image as {bytes, path}, Array2D extension type)."""
    import datasets

    columns: dict[str, list[Any]] = {name: [] for name in features}
    for row in rows:
        for name in features:
            if name == "image":
                columns[name].append({"bytes": row.image, "path": f"{row.key}.{row.image_format}"})
            elif name == "target":
                columns[name].append(row.target)
            else:
                columns[name].append(row.meta.get(name))
    return datasets.Dataset.from_dict(columns, features=features).data.table


def encode_arrow_stream(table: pa.Table) -> bytes:
    """The Arrow IPC stream format ``save_to_disk`` writes and ``load_from_disk`` memory-maps."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def encode_parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=1000)
    return sink.getvalue().to_pybytes()


# ---------------------------------------------------------------------------------------------- writing


def _write_file(out_dir: Path | ObjectPath, name: str, data: bytes, rows: int) -> dict[str, Any]:
    atomic_write_bytes(out_dir / name, data)
    return {"name": name, "rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _finish(
    report: ExportReport, out_dir: Path | ObjectPath, dataset_dir: Path | ObjectPath, skipped: Counter[str]
) -> ExportReport:
    """Record the export (manifest last), drop files a previous, larger export left, register it."""
    report.skipped = dict(sorted(skipped.items()))
    report.rows = sum(f["rows"] for f in report.files)
    report.rows_in = report.rows + sum(skipped.values())
    keep = {f["name"] for f in report.files}
    for path in out_dir.glob(FILE_PATTERNS[report.format]):
        if path.name not in keep:
            path.unlink()
    for path in out_dir.glob(f"{TMP_PREFIX}*"):
        path.unlink()
    atomic_write_json(out_dir / EXPORT_MANIFEST, report.to_json())
    register_export(dataset_dir, report.format, out_dir)
    return report


def _start(
    fmt: str, dataset_dir: Any, out_dir: Any
) -> tuple[Path | ObjectPath, Path | ObjectPath, ExportReport]:
    dataset_dir, out_dir = as_path(dataset_dir), as_path(out_dir)
    load_manifest(dataset_dir / "images")  # a ShardError naming the directory when nothing was built there
    source = (dataset_dir / "images" / MANIFEST_NAME).read_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / EXPORT_MANIFEST).unlink(missing_ok=True)  # an export being rewritten is not a finished one
    return (
        dataset_dir,
        out_dir,
        ExportReport(fmt, str(out_dir), source_manifest_sha256=hashlib.sha256(source).hexdigest()),
    )


def _licence_fields(dataset_dir: Path | ObjectPath) -> list[str]:
    known = SCHEMAS.get(load_manifest(dataset_dir / "images")["schema"]["name"])
    return [f for f in LICENCE_FIELDS if known is not None and f in known.names]


def write_webdataset(
    dataset_dir: str | Path | ObjectPath,
    out_dir: str | Path | ObjectPath,
    shard_bytes: int = 256 * 1024 * 1024,
    verify_images: bool = True,
) -> ExportReport:
    """WebDataset tars of ``{key}.jpg`` + ``{key}.json`` + ``{key}.npy``, and the ``wids.json`` shard index."""
    dataset_dir, out_dir, report = _start("webdataset", dataset_dir, out_dir)
    skipped: Counter[str] = Counter()
    shape, rows = iter_rows(dataset_dir, skipped, verify_images)
    report.target_shape = list(shape)
    for i, chunk in enumerate(_chunks(rows, shard_bytes)):
        report.files.append(_write_file(out_dir, f"laioncele-{i:06d}.tar", encode_tar(chunk), len(chunk)))
    write_wids_index(out_dir, report.files)
    return _finish(report, out_dir, dataset_dir, skipped)


def write_wids_index(out_dir: Path | ObjectPath, files: list[dict[str, Any]]) -> None:
    index = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": "LaionCele",
        "shardlist": [{"url": f["name"], "nsamples": f["rows"]} for f in files],
    }
    atomic_write_json(out_dir / WIDS_INDEX, index)


def _write_hf_like(
    fmt: str,
    dataset_dir: Any,
    out_dir: Any,
    shard_bytes: int,
    verify_images: bool,
    encode: Callable[[pa.Table], bytes],
    file_name: Callable[[int], str],
) -> tuple[ExportReport, Path | ObjectPath, Path | ObjectPath, Counter[str], Any]:
    dataset_dir, out_dir, report = _start(fmt, dataset_dir, out_dir)
    skipped: Counter[str] = Counter()
    shape, rows = iter_rows(dataset_dir, skipped, verify_images)
    report.target_shape = list(shape)
    features = hf_features(shape, _licence_fields(dataset_dir))
    for i, chunk in enumerate(_chunks(rows, shard_bytes)):
        report.files.append(_write_file(out_dir, file_name(i), encode(hf_table(chunk, features)), len(chunk)))
    if not report.files:  # datasets needs one file to know the columns
        report.files.append(_write_file(out_dir, file_name(0), encode(hf_table([], features)), 0))
    return report, dataset_dir, out_dir, skipped, features


def write_hf(
    dataset_dir: str | Path | ObjectPath,
    out_dir: str | Path,
    shard_bytes: int = 256 * 1024 * 1024,
    verify_images: bool = True,
) -> ExportReport:
    """A directory ``datasets.load_from_disk`` opens: Arrow stream files, ``state.json``, ``dataset_info.json``."""
    if isinstance(as_path(out_dir), ObjectPath):
        raise ValueError(
            "the hf export writes a local directory; export parquet or webdataset to an object store"
        )
    report, dataset_dir, out, skipped, features = _write_hf_like(
        "hf",
        dataset_dir,
        out_dir,
        shard_bytes,
        verify_images,
        encode_arrow_stream,
        lambda i: f"data-{i:05d}.arrow",
    )
    write_hf_metadata(out, report.files, features)
    return _finish(report, out, dataset_dir, skipped)


def write_hf_metadata(out_dir: Path | ObjectPath, files: list[dict[str, Any]], features: Any) -> None:
    """``state.json`` and ``dataset_info.json`` as ``save_to_disk`` writes them. The fingerprint is derived from
    the files' checksums, so a rewrite (``remove``) never reuses a ``.map`` cache of the old content."""
    import datasets

    state = {
        "_data_files": [{"filename": f["name"]} for f in files],
        "_fingerprint": _hf_fingerprint(files),
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    info = dataclasses.asdict(
        datasets.DatasetInfo(
            description="LaionCele: LAION images of named people with SDXL name-embedding targets",
            features=features,
        )
    )
    atomic_write_bytes(out_dir / HF_INFO, (json.dumps(dict(sorted(info.items())), indent=2) + "\n").encode())
    atomic_write_json(out_dir / HF_STATE, state)


def _hf_fingerprint(files: list[dict[str, Any]]) -> str:
    return hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()[:16]


def write_parquet(
    dataset_dir: str | Path | ObjectPath,
    out_dir: str | Path | ObjectPath,
    shard_bytes: int = 256 * 1024 * 1024,
    verify_images: bool = True,
) -> ExportReport:
    """Parquet files with the hf export's columns; ``datasets`` features ride in the schema metadata."""
    report, dataset_dir, out, skipped, _ = _write_hf_like(
        "parquet",
        dataset_dir,
        out_dir,
        shard_bytes,
        verify_images,
        encode_parquet,
        lambda i: f"laioncele-{i:05d}.parquet",
    )
    return _finish(report, out, dataset_dir, skipped)


WRITERS: dict[str, Callable[..., ExportReport]] = {
    "webdataset": write_webdataset,
    "hf": write_hf,
    "parquet": write_parquet,
}


def export(
    fmt: str,
    dataset_dir: str | Path | ObjectPath,
    out_dir: str | Path | ObjectPath,
    shard_bytes: int = 256 * 1024 * 1024,
    verify_images: bool = True,
) -> ExportReport:
    if fmt not in WRITERS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return WRITERS[fmt](dataset_dir, out_dir, shard_bytes=shard_bytes, verify_images=verify_images)


# ---------------------------------------------------------------------------------------------- registry


def register_export(dataset_dir: Path | ObjectPath, fmt: str, out_dir: Path | ObjectPath) -> None:
    """Remember where ``fmt`` was exported, so ``remove`` rewrites every export of the dataset."""
    registry = exports_registry(dataset_dir)
    location = str(out_dir.resolve()) if isinstance(out_dir, Path) else str(out_dir)
    registry[fmt] = sorted({*registry.get(fmt, []), location})
    atomic_write_json(dataset_dir / EXPORTS_REGISTRY, registry)


def exports_registry(dataset_dir: str | Path | ObjectPath) -> dict[str, list[str]]:
    path = as_path(dataset_dir) / EXPORTS_REGISTRY
    return json.loads(path.read_text()) if path.is_file() else {}


def load_export_manifest(out_dir: str | Path | ObjectPath) -> dict[str, Any]:
    path = as_path(out_dir) / EXPORT_MANIFEST
    if not path.is_file():
        raise ValueError(f"{out_dir} has no {EXPORT_MANIFEST}: not a finished LaionCele export")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------- filtering


def filter_tar(data: bytes, drop_keys: set[str]) -> tuple[bytes, int, int] | None:
    """(new tar, samples kept, samples dropped), or None when no sample of the tar is in ``drop_keys``."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]  # type: ignore[union-attr]
    keys = [m.name.split(".", 1)[0] for m, _ in members]
    dropped = {k for k in keys if k in drop_keys}
    if not dropped:
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for (member, content), key in zip(members, keys, strict=True):
            if key not in dropped:
                _tar_member(tar, member.name, content)
    return buffer.getvalue(), len(set(keys) - dropped), len(dropped)


def filter_table_file(fmt: str, data: bytes, drop_keys: set[str]) -> tuple[bytes, int, int] | None:
    """The same for one hf arrow file or parquet file: rows whose ``key`` is in ``drop_keys`` removed."""
    if fmt == "parquet":
        table = pq.read_table(pa.py_buffer(data))
    else:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    mask = np.isin(np.asarray(table.column("key").to_pylist(), dtype=object), list(drop_keys))
    dropped = int(mask.sum())
    if not dropped:
        return None
    kept = table.filter(pa.array(~mask))
    encoded = encode_parquet(kept) if fmt == "parquet" else encode_arrow_stream(kept)
    return encoded, kept.num_rows, dropped


def revision_name(name: str, revision: int) -> str:
    """``laioncele-000003.tar`` -> ``laioncele-000003-rm2.tar``: a rewritten file gets a new name, so a crash
    between writing it and switching the manifest leaves the old manifest consistent with the old file."""
    stem, dot, suffix = name.partition(".")
    return f"{re.sub(r'-rm[0-9]+$', '', stem)}-rm{revision}{dot}{suffix}"


def remove_from_export(
    out_dir: str | Path | ObjectPath, drop_keys: set[str], reason: str, revision: int
) -> dict[str, int]:
    """Rewrite, under new names, only the files of one export that hold a key in ``drop_keys``; every other file
    keeps its name and bytes. Indexes (``wids.json``, ``state.json``) and ``export.json`` are switched after the
    new files exist; the replaced files are deleted last."""
    out_dir = as_path(out_dir)
    manifest = load_export_manifest(out_dir)
    fmt = manifest["format"]
    removed = 0
    replaced = []
    for record in manifest["files"]:
        data = (out_dir / record["name"]).read_bytes()
        result = (
            filter_tar(data, drop_keys) if fmt == "webdataset" else filter_table_file(fmt, data, drop_keys)
        )
        if result is None:
            continue
        new, kept, dropped = result
        replaced.append(record["name"])
        record.update(_write_file(out_dir, revision_name(record["name"], revision), new, kept))
        removed += dropped
    if not replaced:
        return {"rows_removed": 0, "files_rewritten": 0}
    manifest["rows"] = sum(f["rows"] for f in manifest["files"])
    manifest["removed"] = {**manifest.get("removed", {})}
    manifest["removed"][reason] = manifest["removed"].get(reason, 0) + removed
    if fmt == "webdataset":
        write_wids_index(out_dir, manifest["files"])
    elif fmt == "hf":
        _rewrite_hf_state(out_dir, manifest["files"])
    atomic_write_json(out_dir / EXPORT_MANIFEST, manifest)
    for name in replaced:
        (out_dir / name).unlink(missing_ok=True)
    return {"rows_removed": removed, "files_rewritten": len(replaced)}


def _rewrite_hf_state(out_dir: Path | ObjectPath, files: list[dict[str, Any]]) -> None:
    state = json.loads((out_dir / HF_STATE).read_text())
    state["_data_files"] = [{"filename": f["name"]} for f in files]
    state["_fingerprint"] = _hf_fingerprint(files)
    atomic_write_json(out_dir / HF_STATE, state)
