"""Versioned Arrow schemas of every stage's output, defined once.

Each schema carries its name and version in the Arrow metadata, so a shard is self-describing and a reader can
refuse a shard written by an incompatible version of the pipeline. Bump a stage's version whenever its columns
or their meaning change.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_NAME_KEY = b"laioncele.io.schema"
SCHEMA_VERSION_KEY = b"laioncele.schema_version"


def _versioned(name: str, version: int, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        fields, metadata={SCHEMA_NAME_KEY: name.encode(), SCHEMA_VERSION_KEY: str(version).encode()}
    )


INGEST = _versioned(
    "ingest",
    2,
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
        pa.field(
            "license", pa.string()
        ),  # LAION's LICENSE column where the input has one (LAION-400M), else null
    ],
)

NAMES_NER = _versioned(
    "names_ner",
    2,
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("names", pa.list_(pa.string()), nullable=False),  # canonical name keys found by NER
        pa.field("surface_forms", pa.list_(pa.string()), nullable=False),  # display form of each, aligned
        # PERSON spans held back only for a given name no list knows ("Kanye West"): keys and display forms
        pa.field("gated_names", pa.list_(pa.string()), nullable=False),
        pa.field("gated_forms", pa.list_(pa.string()), nullable=False),
    ],
)

NAMES_FOUND = _versioned(
    "names_found",
    3,
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("similarity", pa.float32()),
        pa.field("names", pa.list_(pa.string()), nullable=False),  # NER names + corpus-wide second pass
        pa.field("surface_forms", pa.list_(pa.string()), nullable=False),
        pa.field("n_names", pa.int32(), nullable=False),
        pa.field("language", pa.string()),
        pa.field("license", pa.string()),  # carried from ingest
        # the keys in names that only the second pass found (NER did not name them in this caption)
        pa.field("second_pass_names", pa.list_(pa.string()), nullable=False),
    ],
)

NAMES_SAMPLES = _versioned(
    "names_samples",
    2,
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("similarity", pa.float32()),
        pa.field("names", pa.list_(pa.string()), nullable=False),  # canonical name keys
        pa.field("n_names", pa.int32(), nullable=False),
        pa.field("language", pa.string()),
        pa.field("license", pa.string()),  # carried from ingest
    ],
)

NAMES_TABLE = _versioned(
    "names_table",
    2,
    [
        pa.field("name_key", pa.string(), nullable=False),
        pa.field("display_name", pa.string(), nullable=False),
        pa.field("surface_forms", pa.list_(pa.string()), nullable=False),
        pa.field("n_candidates", pa.int64(), nullable=False),  # distinct samples naming it (after the filter)
        pa.field("n_second_pass", pa.int64(), nullable=False),  # of those, samples only the second pass found
        # of all samples that mention it, the share NER named it in itself (before names.second_pass_min_ner_share)
        pa.field("ner_share", pa.float32(), nullable=False),
    ],
)

NAME_TARGETS = _versioned(
    "name_targets",
    1,
    [
        pa.field("name_key", pa.string(), nullable=False),
        pa.field("display_name", pa.string(), nullable=False),  # the text that was encoded
        pa.field("n_name_tokens", pa.int32(), nullable=False),  # CLIP tokens of the name, without BOS/EOS
        pa.field("num_tokens", pa.int32(), nullable=False),  # target positions after BOS (8)
        pa.field("embedding_dim", pa.int32(), nullable=False),  # D: both encoders' widths (2048 in SDXL)
        # SDXL penultimate hidden states at positions 1..num_tokens, row-major (num_tokens * D), float16.
        pa.field("name_embedding", pa.list_(pa.float16()), nullable=False),
        pa.field("pooled_embedding", pa.list_(pa.float16()), nullable=False),  # text_encoder_2 text_embeds
    ],
)

DOWNLOAD = _versioned(
    "download",
    2,
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("caption", pa.string()),
        pa.field("names", pa.list_(pa.string())),
        pa.field("image", pa.binary(), nullable=False),  # re-encoded bytes (longest side <= image_size)
        pa.field("image_format", pa.string(), nullable=False),  # "jpg" or "webp"
        pa.field("width", pa.int32(), nullable=False),  # of the stored image
        pa.field("height", pa.int32(), nullable=False),
        pa.field("original_width", pa.int32(), nullable=False),  # as served, after EXIF rotation
        pa.field("original_height", pa.int32(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),  # hex sha256 of ``image``
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("language", pa.string()),  # carried from ingest
        pa.field("license", pa.string()),  # carried from ingest
    ],
)

DOWNLOAD_FAILURES = _versioned(
    "download_failures",
    1,
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # see laioncele.download's docstring
        pa.field("attempts", pa.int32(), nullable=False),  # 0: never requested (opt-out)
        pa.field("retryable", pa.bool_(), nullable=False),  # transient reason, retries exhausted
        pa.field("detail", pa.string()),
    ],
)

FACES = _versioned(
    "faces",
    2,
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field(
            "face_index", pa.int32(), nullable=False
        ),  # -1: a row standing for an image without kept faces
        pa.field("status", pa.string(), nullable=False),  # "ok", or why the image has no kept face
        pa.field("bbox", pa.list_(pa.float32(), 4)),  # x1, y1, x2, y2 in original-image pixels
        pa.field("landmarks", pa.list_(pa.float32(), 10)),  # 5 x (x, y): left eye, right eye, nose, mouth l/r
        pa.field("det_score", pa.float32()),
        pa.field("embedding", pa.list_(pa.float32())),  # L2-normalised; 512 (insightface) or 128 (offline)
        pa.field("n_faces_detected", pa.int32(), nullable=False),
        pa.field("n_faces_kept", pa.int32(), nullable=False),
        pa.field("image_width", pa.int32(), nullable=False),  # 0 when the image did not decode
        pa.field("image_height", pa.int32(), nullable=False),
        pa.field("backend", pa.string(), nullable=False),
        pa.field("backend_version", pa.string(), nullable=False),
        # The image's sample, carried from the download rows so identities reads faces alone (v2): the names
        # its caption carries, in display form (candidates/names_table), and the sha256 of its stored bytes.
        pa.field("names", pa.list_(pa.string())),
        pa.field("image_sha256", pa.string()),
    ],
)

IDENTITIES = _versioned(
    "identities",
    1,
    [
        pa.field("identity_id", pa.string(), nullable=False),  # primary name key; "#2" for a split namesake
        pa.field("name", pa.string(), nullable=False),  # display name (most frequent spelling of the key)
        pa.field("name_key", pa.string(), nullable=False),
        pa.field("aliases", pa.list_(pa.string()), nullable=False),  # display names of all merged names
        pa.field("alias_keys", pa.list_(pa.string()), nullable=False),
        pa.field("n_images", pa.int32(), nullable=False),
        pa.field("centroid", pa.list_(pa.float32()), nullable=False),  # unit mean of the kept faces
        pa.field("mean_similarity", pa.float32()),  # kept faces to centroid
        pa.field("min_similarity", pa.float32()),
        pa.field("n_name_images", pa.int32()),  # faced images carrying the primary name
        pa.field("share", pa.float32()),  # dominant cluster / n_name_images
        pa.field("runner_up_share", pa.float32()),  # runner-up cluster / dominant cluster
        pa.field("backend", pa.string()),
    ],
)

IDENTITY_IMAGES = _versioned(
    "identity_images",
    1,
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("face_index", pa.int32(), nullable=False),
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),  # the identity's display name
        pa.field("name_key", pa.string(), nullable=False),
        pa.field("caption_name", pa.string(), nullable=False),  # the alias this image's caption used
        pa.field("similarity", pa.float32(), nullable=False),  # face to identity centroid
        pa.field("bbox", pa.list_(pa.float32(), 4)),  # carried from the faces table when present
        pa.field("det_score", pa.float32()),
    ],
)

# ---------------------------------------------------------------------------------------------- final dataset
# output/<run>/dataset/identities/ and .../images/ are stage directories (shards + manifest.json); beside them
# dataset/manifest.json (counts, checksums, config, text-encoder source) and mean_name_embedding.npy (F_mean).

DATASET_IDENTITIES = _versioned(
    "dataset_identities",
    1,
    [
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),  # display name that was encoded
        pa.field("aliases", pa.list_(pa.string()), nullable=False),
        pa.field("n_images", pa.int32(), nullable=False),
        pa.field("num_tokens", pa.int32(), nullable=False),  # 8
        pa.field("embedding_dim", pa.int32(), nullable=False),  # 2048 with SDXL's encoders
        # The target: SDXL penultimate hidden states of the name at positions 1..8, row-major, float16.
        pa.field("name_embedding", pa.list_(pa.float16()), nullable=False),
        pa.field("pooled_embedding", pa.list_(pa.float16()), nullable=False),  # text_encoder_2 text_embeds
        pa.field("centroid", pa.list_(pa.float32()), nullable=False),  # face-embedding centroid (unit)
        pa.field("mean_similarity", pa.float32()),
        pa.field("min_similarity", pa.float32()),
        pa.field("runner_up_share", pa.float32()),
        pa.field("face_backend", pa.string()),
    ],
)

DATASET_IMAGES = _versioned(
    "dataset_images",
    2,
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("image", pa.binary(), nullable=False),  # encoded bytes as downloaded (JPEG/WebP)
        pa.field(
            "width", pa.int32(), nullable=False
        ),  # of the stored image; bbox/landmarks are in these pixels
        pa.field("height", pa.int32(), nullable=False),
        pa.field("bbox", pa.list_(pa.float32(), 4), nullable=False),  # x1, y1, x2, y2
        pa.field("landmarks", pa.list_(pa.float32(), 10)),  # 5 x (x, y)
        pa.field("face_embedding", pa.list_(pa.float32()), nullable=False),  # L2-normalised
        pa.field("similarity", pa.float32(), nullable=False),  # face to identity centroid
        pa.field("language", pa.string()),
        pa.field("license", pa.string()),  # carried from ingest
    ],
)

# Encoder training's cache of frozen CLIP image features (one row per dataset image).
TRAINING_FEATURES = _versioned(
    "training_features",
    1,
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("features", pa.list_(pa.float32()), nullable=False),  # towers' image embeds, concatenated
    ],
)

SCHEMAS: dict[str, pa.Schema] = {
    s.metadata[SCHEMA_NAME_KEY].decode(): s
    for s in (
        INGEST,
        NAMES_NER,
        NAMES_FOUND,
        NAMES_SAMPLES,
        NAMES_TABLE,
        NAME_TARGETS,
        DOWNLOAD,
        DOWNLOAD_FAILURES,
        FACES,
        IDENTITIES,
        IDENTITY_IMAGES,
        DATASET_IDENTITIES,
        DATASET_IMAGES,
        TRAINING_FEATURES,
    )
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


def carry_columns(
    target: pa.Table, source: pa.Table, columns: tuple[str, ...], key: str = "sample_id"
) -> pa.Table:
    """``target`` with ``columns`` replaced by ``source``'s values for the same ``key`` (target's row order
    kept; null where ``source`` lacks the key or the column): how a stage passes along columns its worker does
    not need, such as a caption's language and licence through the download."""
    index = pc.index_in(target.column(key), value_set=source.column(key))
    for name in columns:
        field = target.schema.field(name)  # the target's schema has the column: it is filled, not added
        values = source.column(name).take(index) if name in source.column_names else pa.nulls(target.num_rows)
        target = target.set_column(target.schema.get_field_index(name), field, values.cast(field.type))
    return target
