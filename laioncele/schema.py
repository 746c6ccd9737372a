"""Versioned Arrow schemas of every stage's output, defined once.

Each schema carries its name and version in the Arrow metadata, so a shard is self-describing and a reader can
refuse a shard written by an incompatible version of the pipeline. Bump a stage's version whenever its columns
or their meaning change.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_NAME_KEY = b"laioncele.schema"
SCHEMA_VERSION_KEY = b"laioncele.schema_version"


def _versioned(name: str, version: int, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={SCHEMA_NAME_KEY: name.encode(), SCHEMA_VERSION_KEY: str(version).encode()})


INGEST = _versioned(
    "ingest",
    1,
    [
        pa.field("sample_id", pa.string(), nullable=False),  # 16 hex chars of sha256(url): stable across runs
        pa.field("url", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("width", pa.int32()),  # as LAION reports it; null when the column is absent
        pa.field("height", pa.int32()),
        pa.field("similarity", pa.float32()),  # CLIP image-text similarity from LAION
        pa.field("punsafe", pa.float32()),
        pa.field("pwatermark", pa.float32()),
        pa.field("language", pa.string()),
    ],
)

NAMES_SAMPLES = _versioned(
    "names_samples",
    1,
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("similarity", pa.float32()),
        pa.field("names", pa.list_(pa.string()), nullable=False),  # canonical name keys
        pa.field("n_names", pa.int32(), nullable=False),
    ],
)

NAMES_TABLE = _versioned(
    "names_table",
    1,
    [
        pa.field("name_key", pa.string(), nullable=False),
        pa.field("display_name", pa.string(), nullable=False),
        pa.field("surface_forms", pa.list_(pa.string()), nullable=False),
        pa.field("n_candidates", pa.int64(), nullable=False),
    ],
)

SCHEMAS: dict[str, pa.Schema] = {
    s.metadata[SCHEMA_NAME_KEY].decode(): s for s in (INGEST, NAMES_SAMPLES, NAMES_TABLE)
}


def schema_id(schema: pa.Schema) -> tuple[str, int] | None:
    """(name, version) stored in a schema's metadata, or None for an unversioned schema."""
    meta = schema.metadata or {}
    if SCHEMA_NAME_KEY not in meta:
        return None
    return meta[SCHEMA_NAME_KEY].decode(), int(meta[SCHEMA_VERSION_KEY].decode())


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select, order and cast ``table``'s columns to ``schema`` (missing nullable columns become nulls)."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"column {field.name!r} is required by schema {schema_id(schema)} but missing")
    return pa.Table.from_arrays(columns, schema=schema)
