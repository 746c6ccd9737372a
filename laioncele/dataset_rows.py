"""The dataset stage's joins: its image rows and identity rows, each assembled from three stages' outputs.

``dataset_images``: one download shard's rows, kept where the identities stage kept the image, joined with the
kept face's geometry and embedding (faces, by sample and face index) and the identity it belongs to.
``dataset_identities``: the identities table joined with the name targets (an identity whose name could not
be encoded has no target and is left out). Both are Arrow lookups (``laioncele.io.joins``) in the order of the
rows they start from, so the output is the same shard for shard on every run.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from laioncele.io.joins import lookup, matched
from laioncele.io.schema import DATASET_IDENTITIES, DATASET_IMAGES, conform

# The columns each input contributes.
KEPT_COLUMNS = ["sample_id", "face_index", "identity_id", "similarity"]
FACE_COLUMNS = ["sample_id", "face_index", "bbox", "landmarks", "embedding"]
DOWNLOAD_COLUMNS = ["sample_id", "url", "caption", "image", "width", "height", "language", "license"]
TARGET_COLUMNS = ["name_key", "num_tokens", "embedding_dim", "name_embedding", "pooled_embedding"]


def dataset_images(download: pa.Table, kept: pa.Table, faces: pa.Table) -> pa.Table:
    """``DATASET_IMAGES`` rows of one download shard, in its row order: each downloaded image the identities
    stage kept (``kept``: one row per image, ``KEPT_COLUMNS``), with its kept face from ``faces``.

    A kept image whose face row is missing raises (faces and identities are then from different builds)."""
    kept_row = lookup(download, kept, ["sample_id"])
    rows = matched(kept_row)
    images = download.take(rows)
    kept = kept.take(pc.take(kept_row, rows))
    face_row = lookup(kept, faces, ["sample_id", "face_index"])
    if face_row.null_count:
        lost = kept.filter(pc.is_null(face_row))
        raise ValueError(
            f"{lost.num_rows} image(s) kept by the identities stage have no row in the faces stage, e.g. "
            f"sample {lost.column('sample_id')[0].as_py()!r} face {lost.column('face_index')[0].as_py()}: "
            "rebuild identities from these faces"
        )
    face = faces.take(face_row)

    def column(table: pa.Table, name: str) -> pa.ChunkedArray | pa.Array:
        return table.column(name) if name in table.column_names else pa.nulls(table.num_rows, pa.string())

    table = pa.table(
        {
            "sample_id": images.column("sample_id"),
            "identity_id": kept.column("identity_id"),
            "url": images.column("url"),
            "caption": pc.fill_null(images.column("caption"), ""),
            "image": images.column("image"),
            "width": images.column("width"),
            "height": images.column("height"),
            "bbox": face.column("bbox"),
            "landmarks": face.column("landmarks"),
            "face_embedding": face.column("embedding"),
            "similarity": kept.column("similarity"),
            "language": column(images, "language"),
            "license": column(images, "license"),
        }
    )
    return conform(table, DATASET_IMAGES)


def dataset_identities(identities: pa.Table, targets: pa.Table) -> pa.Table:
    """``DATASET_IDENTITIES``: each identity (identities table order) with its name target (``targets`` keyed by
    ``name_key`` = the identity's ``identity_id``); identities without a target are left out."""
    target_row = lookup(identities, targets, ["identity_id"], ["name_key"])
    rows = matched(target_row)
    ident = identities.take(rows)
    target = targets.take(pc.take(target_row, rows))
    table = pa.table(
        {
            "identity_id": ident.column("identity_id"),
            "name": ident.column("name"),
            "aliases": ident.column("aliases"),
            "n_images": ident.column("n_images"),
            **{c: target.column(c) for c in TARGET_COLUMNS if c != "name_key"},
            "centroid": ident.column("centroid"),
            "mean_similarity": ident.column("mean_similarity"),
            "min_similarity": ident.column("min_similarity"),
            "runner_up_share": ident.column("runner_up_share"),
            "face_backend": ident.column("backend"),
        }
    )
    return conform(table, DATASET_IDENTITIES)
