"""Ingest: LAION metadata rows -> clean rows with a stable ``sample_id``.

LAION ships parquet with upper-case columns (URL, TEXT, WIDTH, HEIGHT, similarity, punsafe, pwatermark, LANGUAGE);
re-releases and tools use lower-case variants (url, caption, text, ...). This module maps any of them onto the
``ingest`` schema and drops unusable rows, counting each drop by reason.
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from laioncele.config import IngestConfig
from laioncele.io.schema import INGEST, conform
from laioncele.io.storage import filesystem_from_uri

# Our column -> accepted source column names, first match wins (case-insensitive).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "url": ("url", "image_url"),
    "caption": ("text", "caption", "alt", "alt_text"),
    "width": ("width", "original_width"),
    "height": ("height", "original_height"),
    "similarity": ("similarity", "clip_sim", "clip_similarity"),
    "punsafe": ("punsafe",),
    "pwatermark": ("pwatermark",),
    "language": ("language", "lang"),
    "license": ("license", "licence"),
}
REQUIRED = ("url", "caption")
# What LAION's own parquet calls each column: the names error messages give.
LAION_NAMES = {
    "url": "URL",
    "caption": "TEXT",
    "width": "WIDTH",
    "height": "HEIGHT",
    "similarity": "similarity",
    "punsafe": "punsafe",
    "pwatermark": "pwatermark",
    "language": "LANGUAGE",
    "license": "LICENSE",
}

logger = logging.getLogger(__name__)


def resolve_columns(source_columns: list[str], source: str | None = None) -> dict[str, str]:
    """Map our column names to the source file's actual column names (only those present).

    A missing required column raises ``ValueError`` naming ``source`` (the file) and LAION's column name."""
    by_lower = {}
    for name in source_columns:
        by_lower.setdefault(name.lower(), name)
    resolved = {}
    for ours, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in by_lower:
                resolved[ours] = by_lower[alias]
                break
    missing = [c for c in REQUIRED if c not in resolved]
    if missing:
        wanted = "; ".join(
            f"{LAION_NAMES[c]} (the {c}; also accepted, any case: {', '.join(COLUMN_ALIASES[c])})"
            for c in missing
        )
        where = f"input file {source}" if source else "LAION metadata"
        raise ValueError(f"{where} lacks LAION column(s) {wanted}; its columns are {source_columns}")
    return resolved


def unused_columns(source_columns: list[str]) -> list[str]:
    """Input columns ingest does not keep (the schema has no place for them): reported, never silent."""
    used = set(resolve_columns(source_columns).values())
    return [name for name in source_columns if name not in used]


def sample_ids(urls: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Stable id of a sample: the first 16 hex chars of sha256(url). Same URL -> same id on every run.

    Arrow has no sha256 kernel, so this is the one per-row Python loop of ingest: over raw ``bytes`` (no
    str -> bytes encode per row), keeping each row's first 8 digest bytes; the hex encoding is one call over
    all of them, and the string column is built from that buffer (fixed 16-char rows) with no Python ``str``
    per row. A null URL has a null id.
    """
    raw = pc.cast(urls, pa.binary()) if not pa.types.is_binary(urls.type) else urls
    sha256 = hashlib.sha256
    values = raw.to_pylist()
    valid = np.fromiter((u is not None for u in values), dtype=bool, count=len(values))
    digests = b"".join([sha256(u).digest()[:8] for u in values if u is not None])
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(valid * np.int32(16), out=offsets[1:])
    validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        pa.string(),
        len(values),
        [validity, pa.py_buffer(offsets), pa.py_buffer(digests.hex().encode())],
        null_count=int(len(values) - valid.sum()),
    )


# Arrow <-> numpy for masks, lengths and indices through their buffers. ``pa.array(...)``, ``pa.scalar(...)``,
# ``Array.to_numpy()`` and a compute call given a Python value (``pc.equal(x, 0)``) import pandas on first use
# (pyarrow's pandas shim): 0.4-1.4 s, paid by every fresh Ray worker on its first unit, for a library ingest
# does not use. Ingest's conversions below never touch the shim.


def _bool_mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as a numpy mask; a null counts as False."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    parts = []
    for chunk in chunks:
        n, offset = len(chunk), chunk.offset
        validity, data = chunk.buffers()
        mask = _unpack_bits(data, offset, n)
        if chunk.null_count:
            mask &= _unpack_bits(validity, offset, n)
        parts.append(mask)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _unpack_bits(bitmap: pa.Buffer | None, offset: int, n: int) -> np.ndarray:
    if bitmap is None or n == 0:
        return np.zeros(n, dtype=bool)
    bits = np.unpackbits(np.frombuffer(bitmap, np.uint8), count=offset + n, bitorder="little")
    return bits[offset:].astype(bool)


def _numbers(values: pa.Array | pa.ChunkedArray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-width numeric column (Arrow type matching ``dtype``) as numpy values and a validity mask; a null
    row's value is 0."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if values.type.bit_width != np.dtype(dtype).itemsize * 8:
        raise TypeError(f"a {values.type} column read as {np.dtype(dtype)}")
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=dtype), np.zeros(0, dtype=bool)
    validity, data = values.buffers()
    out = np.frombuffer(data, dtype, n, values.offset * np.dtype(dtype).itemsize)
    if not values.null_count:
        return out, np.ones(n, dtype=bool)
    valid = _unpack_bits(validity, values.offset, n)
    return np.where(valid, out, 0), valid


def _arrow_mask(mask: np.ndarray) -> pa.BooleanArray:
    """A numpy mask as a boolean Arrow array (no nulls)."""
    bits = np.packbits(np.asarray(mask, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])


def _arrow_indices(indices: np.ndarray) -> pa.Array:
    """Row positions (numpy) as an int64 Arrow array for ``take``."""
    data = np.ascontiguousarray(indices, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def _decode_text(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Captions as strings, plus a mask of values that were not valid UTF-8 (LAION has some)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        binary = column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
    elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        binary = column
    else:
        return column.cast(pa.string()), np.zeros(len(column), dtype=bool)
    try:
        return binary.cast(pa.string()), np.zeros(len(column), dtype=bool)
    except pa.ArrowInvalid:
        pass  # some row is not UTF-8: find which, then null them
    bad = invalid_utf8_rows(binary)
    text = pc.if_else(_arrow_mask(bad), pa.nulls(len(binary), binary.type), binary)
    return text.cast(pa.string()), bad


def invalid_utf8_rows(binary: pa.Array) -> np.ndarray:
    """Mask of the non-null rows of a binary array that are not valid UTF-8.

    One C-level decode of the whole value buffer finds the byte ranges of every invalid sequence (an error
    handler records them); they map to rows through the offsets. Rows where a character could straddle a row
    boundary (a row starting with a continuation byte, and the row before it) and rows with an error are then
    decoded one by one, so the mask is exactly "``bytes.decode('utf-8')`` raises": a row-by-row Python loop
    over the few suspects, not over the column (2% bad rows made the old loop the slowest step of ingest).
    """
    n = len(binary)
    offset_type = np.int64 if pa.types.is_large_binary(binary.type) else np.int32
    offsets = np.frombuffer(binary.buffers()[1], offset_type, n + 1, binary.offset * offset_type().itemsize)
    offsets = offsets.astype(np.int64)
    data = binary.buffers()[2]
    first = int(offsets[0])
    values = memoryview(data)[first : int(offsets[-1])] if data is not None else memoryview(b"")
    offsets -= first
    _decode_errors.spans = errors = []
    codecs.decode(values, "utf-8", _COLLECT_ERRORS)
    suspect = np.zeros(n, dtype=bool)
    if errors:
        spans = np.array(errors, dtype=np.int64)
        suspect[np.searchsorted(offsets, spans[:, 0], "right") - 1] = True
        suspect[np.searchsorted(offsets, spans[:, 1] - 1, "right") - 1] = True
    starts, lengths = offsets[:-1], np.diff(offsets)
    nonempty = lengths > 0
    continuation = np.zeros(n, dtype=bool)
    continuation[nonempty] = (np.frombuffer(values, np.uint8)[starts[nonempty]] & 0xC0) == 0x80
    suspect |= continuation
    suspect[:-1] |= continuation[1:]
    if binary.null_count:
        suspect &= _bool_mask(binary.is_valid())
    bad = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(suspect).tolist():
        try:
            bytes(values[starts[i] : starts[i] + lengths[i]]).decode("utf-8")
        except UnicodeDecodeError:
            bad[i] = True
    return bad


_COLLECT_ERRORS = "laioncele-collect-utf8-errors"
_decode_errors = threading.local()  # byte spans of the invalid sequences the current thread's decode met


def _collect_decode_error(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _decode_errors.spans.append((exc.start, exc.end))
    return "", exc.end


codecs.register_error(_COLLECT_ERRORS, _collect_decode_error)


@dataclass
class IngestResult:
    table: pa.Table
    drops: Counter[str]


def clean_batch(raw: pa.Table, config: IngestConfig | None = None) -> IngestResult:
    """Map raw LAION columns onto the ingest schema and drop rows that cannot become samples."""
    config = config or IngestConfig()
    columns = resolve_columns(raw.column_names)
    drops: Counter[str] = Counter()
    n = raw.num_rows

    url = raw.column(columns["url"]).cast(pa.string())
    url = pc.utf8_trim_whitespace(url)
    caption, undecodable = _decode_text(raw.column(columns["caption"]))
    caption = pc.utf8_trim_whitespace(caption)

    url_chars, has_url = _numbers(pc.utf8_length(url), np.int32)
    caption_chars, has_caption = _numbers(pc.utf8_length(caption), np.int32)
    no_url = ~has_url | (url_chars == 0)
    empty_caption = ~has_caption | (caption_chars == 0)
    too_long = has_caption & (caption_chars > config.max_caption_chars)

    def size_column(name: str) -> pa.Array:
        if name not in columns:
            return pa.nulls(n, pa.int32())
        return pc.cast(raw.column(columns[name]), pa.float64(), safe=False)

    width, height = size_column("width"), size_column("height")
    too_small = np.zeros(n, dtype=bool)
    if config.min_width and "width" in columns:
        values, valid = _numbers(width, np.float64)
        too_small |= valid & (values < config.min_width)
    if config.min_height and "height" in columns:
        values, valid = _numbers(height, np.float64)
        too_small |= valid & (values < config.min_height)

    # Count each dropped row once, under the first reason that applies, in this order.
    keep = np.ones(n, dtype=bool)
    for reason, mask in (
        ("missing_url", no_url),
        ("undecodable_caption", undecodable),
        ("empty_caption", empty_caption & ~undecodable),
        ("caption_too_long", too_long),
        ("below_min_size", too_small),
    ):
        hit = keep & mask
        if hit.any():
            drops[reason] += int(hit.sum())
        keep &= ~mask

    # One filter over the whole table (not a take per column), then ids for the kept rows only.
    out = {
        "url": url,
        "caption": caption,
        "width": pc.cast(width, pa.int32(), safe=False) if "width" in columns else None,
        "height": pc.cast(height, pa.int32(), safe=False) if "height" in columns else None,
    }
    for name in ("similarity", "punsafe", "pwatermark", "language", "license"):
        out[name] = raw.column(columns[name]) if name in columns else None
    table = pa.table({k: v for k, v in out.items() if v is not None}).filter(_arrow_mask(keep))
    table = table.append_column("sample_id", sample_ids(table.column("url")))

    # The same URL can appear several times in LAION; one sample per URL (first occurrence wins).
    table, n_dup = drop_duplicate_ids(table)
    if n_dup:
        drops["duplicate_url"] += n_dup
    return IngestResult(conform(table, INGEST), drops)


def drop_duplicate_ids(table: pa.Table, column: str = "sample_id") -> tuple[pa.Table, int]:
    """Keep the first row of each id, in input order (a hash table in Arrow, not a sort of Python strings)."""
    ids = table.column(column)
    distinct = pc.unique(ids)
    if len(distinct) == len(ids):
        return table, 0
    first, _ = _numbers(pc.index_in(distinct, value_set=ids), np.int32)  # each id's first occurrence
    return table.take(_arrow_indices(np.sort(first))), len(ids) - len(distinct)


# ---------------------------------------------------------------------------------------------- input units


@dataclass(frozen=True)
class ParquetUnit:
    """A resumable slice of the input: consecutive row groups of one parquet file."""

    unit_id: str
    path: str
    row_groups: tuple[int, ...]
    rows: int  # rows this unit reads (after the input.max_rows cap)


def expand_input_paths(paths: list[str]) -> list[str]:
    """Files behind the configured paths: plain files, directories (all *.parquet below) and globs.
    Local paths and URIs (s3://, gs://) go through pyarrow's filesystem layer."""
    if not paths:
        raise ValueError(
            "no input: input.paths is empty (the built-in defaults name no input). Build the embedded sample "
            "with --config configs/sample.yaml, or name LAION parquet with --set input.paths=[FILE.parquet]"
        )
    files: list[str] = []
    for spec in paths:
        filesystem, path = filesystem_from_uri(spec) if "://" in spec else (pafs.LocalFileSystem(), spec)
        if any(ch in path for ch in "*?["):
            base = path.split("*", 1)[0].rsplit("/", 1)[0] or "."
            selector = pafs.FileSelector(base, recursive=True)
            matched = sorted(
                info.path for info in filesystem.get_file_info(selector) if fnmatch.fnmatch(info.path, path)
            )
            files += [_with_scheme(spec, m) for m in matched]
            continue
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(path, recursive=True)
            files += sorted(
                _with_scheme(spec, i.path)
                for i in filesystem.get_file_info(selector)
                if i.path.endswith(".parquet")
            )
        elif info.type == pafs.FileType.File:
            files.append(_with_scheme(spec, path))
        else:
            raise ValueError(f"input path {spec!r} does not exist")
    if not files:
        raise ValueError(f"no parquet files found under {paths}")
    return files


def _with_scheme(spec: str, path: str) -> str:
    """Re-attach the URI scheme; local paths become absolute so Ray workers (other cwd) find them."""
    return f"{spec.split('://', 1)[0]}://{path}" if "://" in spec else str(Path(path).resolve())


def open_parquet(path: str) -> pq.ParquetFile:
    """Open one input file; an unreadable or non-parquet file raises ``ValueError`` naming it (Arrow's own
    "Parquet magic bytes not found" names no file)."""
    try:
        if "://" in path:
            filesystem, inner = filesystem_from_uri(path)
            return pq.ParquetFile(filesystem.open_input_file(inner))
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"input file {path} cannot be read as parquet: {exc}") from None


def plan_units(paths: list[str], rows_per_unit: int, max_rows: int | None = None) -> list[ParquetUnit]:
    """Cut the input into units of whole row groups of about ``rows_per_unit`` rows, in a stable order.

    Each file's columns are checked here, on the driver, from its footer: a file without LAION's URL and
    TEXT fails the plan naming the file, before any worker starts; columns ingest does not keep are logged
    as a warning (once per set of columns)."""
    units: list[ParquetUnit] = []
    unused: dict[tuple[str, ...], list[str]] = {}
    budget = max_rows
    for file_index, path in enumerate(expand_input_paths(paths)):
        parquet = open_parquet(path)
        columns = parquet.schema_arrow.names
        resolve_columns(columns, source=path)
        if extra := unused_columns(columns):
            unused.setdefault(tuple(extra), []).append(path)
        meta = parquet.metadata
        group: list[int] = []
        rows = 0
        for rg in range(meta.num_row_groups):
            if budget is not None and budget <= 0:
                break
            n = meta.row_group(rg).num_rows if budget is None else min(meta.row_group(rg).num_rows, budget)
            group.append(rg)
            rows += n
            if budget is not None:
                budget -= n
            if rows >= rows_per_unit:
                units.append(_unit(file_index, path, group, rows))
                group, rows = [], 0
        if group:
            units.append(_unit(file_index, path, group, rows))
    for extra, files in unused.items():
        logger.warning(
            "input columns not kept by ingest (dropped): %s, in %d file(s), e.g. %s; ingest keeps %s",
            ", ".join(extra),
            len(files),
            files[0],
            ", ".join(LAION_NAMES.values()),
        )
    return units


def _unit(file_index: int, path: str, groups: list[int], rows: int) -> ParquetUnit:
    stem = Path(path.split("://")[-1]).stem
    return ParquetUnit(f"f{file_index:05d}-{stem}-rg{groups[0]:05d}", path, tuple(groups), rows)


def read_unit(unit: ParquetUnit) -> pa.Table:
    return open_parquet(unit.path).read_row_groups(list(unit.row_groups)).slice(0, unit.rows)
