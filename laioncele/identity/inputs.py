"""Read the faces table into flat NumPy arrays for identity cleaning, counting every unusable face by reason.

One row per detected face comes in; out come the usable faces' embeddings and the (face, name) pairs, with
names reduced to a case/whitespace-normalised key (the display name of a key is its most frequent surface
form). Nothing here loops over faces in Python: names are handled once per distinct string.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from laioncele.identity.graph import l2_normalise

REQUIRED_COLUMNS = ("sample_id", "names", "face_index", "embedding")


def name_key(name: str) -> str:
    """Grouping key of a display name: casefolded, whitespace collapsed. Deliberately not ``names.name_key``:
    names arrive here already validated and normalised by the names stages, and identity cleaning must accept
    any caller's name strings (ids with digits, single tokens) without re-judging them."""
    return " ".join(name.casefold().split())


@dataclass
class FaceInput:
    """Usable faces and their (face, name) pairs, all as arrays."""

    embeddings: np.ndarray  # (n_usable, d) float32, unit rows
    source_row: np.ndarray  # (n_usable,) row of each usable face in the input table
    image: np.ndarray  # (n_usable,) int image code (one per distinct sample_id)
    sample_ids: pa.Array  # image code -> sample_id string
    pair_face: np.ndarray  # (n_pairs,) usable-face index
    pair_key: np.ndarray  # (n_pairs,) name-key code
    key_names: list[str]  # key code -> normalised key
    key_display: list[str]  # key code -> most frequent surface form
    pair_raw: np.ndarray  # (n_pairs,) code into raw_names: the caption's own spelling
    raw_names: list[str]
    face_drops: Counter


def _embedding_matrix(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(usable mask over rows, (n_usable, d) float32 matrix); the dimension is the most common length."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(array.type):
        array = array.cast(pa.list_(array.type.value_type))
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
    if len(lengths) == 0 or lengths.max() == 0:
        return np.zeros(len(lengths), bool), np.zeros((0, 0), np.float32)
    dim = int(np.bincount(lengths[lengths > 0]).argmax())
    usable = lengths == dim
    kept = pc.filter(array, pa.array(usable)) if not usable.all() else array
    flat = pc.list_flatten(kept).cast(pa.float32()).to_numpy(zero_copy_only=False)
    matrix = flat.reshape(-1, dim)
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix, dtype=np.float64))
    finite = np.isfinite(norms) & (norms > 1e-6)
    if not finite.all():
        rows = np.flatnonzero(usable)
        usable[rows[~finite]] = False
        matrix = matrix[finite]
        norms = norms[finite]
    if np.abs(norms - 1).max(initial=0) > 1e-3:  # the faces stage normalises; re-do it only when needed
        matrix = l2_normalise(matrix)
    return usable, matrix


def read_faces(faces: pa.Table) -> FaceInput:
    missing = [c for c in REQUIRED_COLUMNS if c not in faces.column_names]
    if missing:
        raise ValueError(f"faces table lacks required column(s) {missing}")
    drops: Counter = Counter()
    usable, emb = _embedding_matrix(faces.column("embedding"))
    # The faces stage writes face_index -1 for an image without a kept face: a marker row, not a bad face.
    marker = pc.fill_null(pc.less(faces.column("face_index"), 0), False).to_numpy(zero_copy_only=False)
    drops["image_without_face"] = int(marker.sum())
    drops["invalid_embedding"] = int((~usable & ~marker).sum())
    if (usable & marker).any():
        emb = emb[~marker[usable]]
        usable &= ~marker
    has_sample = faces.column("sample_id").is_valid().to_numpy(zero_copy_only=False)
    drops["missing_sample_id"] = int((usable & ~has_sample).sum())
    emb = emb[has_sample[usable]] if not has_sample[usable].all() else emb
    usable &= has_sample

    names = faces.column("names").combine_chunks()
    parent = pc.list_parent_indices(names).to_numpy(zero_copy_only=False)
    encoded = pc.dictionary_encode(pc.list_flatten(names))
    raw_names = [s if s is not None else "" for s in encoded.dictionary.to_pylist()]
    raw_code = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    keys_of_raw = [name_key(s) for s in raw_names]
    key_names, raw_to_key = np.unique(np.array(keys_of_raw + [""], dtype=object), return_inverse=True)
    raw_to_key = raw_to_key[:-1]
    empty_key = int(np.flatnonzero(key_names == "")[0])
    pair_key = np.where(raw_code >= 0, raw_to_key[np.maximum(raw_code, 0)], empty_key)

    face_of_row = np.cumsum(usable) - 1
    ok = usable[parent] & (pair_key != empty_key)
    named = np.zeros(len(usable), bool)
    named[parent[ok]] = True
    drops["no_names"] = int((usable & ~named).sum())
    pair_face, pair_key, pair_raw = face_of_row[parent[ok]], pair_key[ok], raw_code[ok]
    # One pair per (face, key): a caption naming "Tom Hanks" and "tom hanks" names one person once.
    _, first = np.unique(pair_face.astype(np.int64) * len(key_names) + pair_key, return_index=True)
    pair_face, pair_key, pair_raw = pair_face[first], pair_key[first], pair_raw[first]

    raw_counts = np.bincount(pair_raw, minlength=len(raw_names))
    order = np.lexsort((-raw_counts, raw_to_key))  # per key, most frequent surface form first
    key_display = list(key_names)
    seen = set()
    for raw in order:
        key = int(raw_to_key[raw])
        if key not in seen and raw_counts[raw] > 0:
            seen.add(key)
            key_display[key] = " ".join(raw_names[raw].split())

    sample = pc.dictionary_encode(faces.column("sample_id").combine_chunks())
    source_row = np.flatnonzero(usable)
    image = sample.indices.to_numpy(zero_copy_only=False)[source_row].astype(np.int64)
    return FaceInput(
        embeddings=emb,
        source_row=source_row,
        image=image,
        sample_ids=sample.dictionary,
        pair_face=pair_face.astype(np.int64),
        pair_key=pair_key.astype(np.int64),
        key_names=[str(k) for k in key_names],
        key_display=key_display,
        pair_raw=pair_raw.astype(np.int64),
        raw_names=raw_names,
        face_drops=Counter({k: v for k, v in drops.items() if v}),
    )
