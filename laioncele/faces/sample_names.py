"""The faces stage's join: each face row gets its sample's caption names (display form) and image hash.

Names travel with the faces, so the identities stage reads the faces stage alone instead of joining every face
back to the download rows and the candidates' names table. Both joins are Arrow lookups
(``laioncele.io.joins``): the download rows by ``sample_id``, the names table by ``name_key``.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from laioncele.io.joins import map_list_values
from laioncele.io.schema import carry_columns

# What the faces stage reads from a download row beside its image.
DOWNLOAD_COLUMNS = ("sample_id", "names", "sha256")


def display_names(name_keys: pa.ChunkedArray | pa.Array, names_table: pa.Table) -> pa.Array:
    """Lists of name keys -> the same lists in display form (``names_table``'s ``display_name`` of each
    ``name_key``; a key the table does not know is kept as it is)."""
    return map_list_values(name_keys, names_table.column("name_key"), names_table.column("display_name"))


def with_sample_names(faces: pa.Table, download_rows: pa.Table, names_table: pa.Table) -> pa.Table:
    """``faces`` (``schema.FACES``) with ``names`` and ``image_sha256`` filled from the download rows of the
    same ``sample_id`` (empty names and a null hash for a sample the rows lack); row order kept."""
    missing = [c for c in DOWNLOAD_COLUMNS if c not in download_rows.column_names]
    if missing:
        raise ValueError(f"download rows lack column(s) {missing} the faces stage carries onto each face")
    source = pa.table(
        {
            "sample_id": download_rows.column("sample_id"),
            "names": display_names(download_rows.column("names"), names_table),
            "image_sha256": download_rows.column("sha256"),
        }
    )
    faces = carry_columns(faces, source, ("names", "image_sha256"))
    names = faces.column("names")
    if names.null_count:  # a sample without names (or not in the rows) carries none
        filled = pc.coalesce(names, pa.scalar([], names.type))
        faces = faces.set_column(faces.schema.get_field_index("names"), faces.schema.field("names"), filled)
    return faces
