"""Key lookups between Arrow tables, in the left table's row order: how one stage's rows meet another's.

Every cross-stage join of the pipeline goes through here (faces <- download rows, dataset <- download, faces and
identities, dataset identities <- targets, names <- ner), so none is a Python dict built row by row. The join
itself is Arrow's hash join over the key columns and two row numbers; the payload columns are then gathered
with ``take``, so list, fixed-size-list and binary columns of any size never pass through the join.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_LEFT_ROW = "__left_row"
_RIGHT_ROW = "__right_row"


def lookup(
    left: pa.Table, right: pa.Table, keys: Sequence[str], right_keys: Sequence[str] | None = None
) -> pa.Array:
    """For each row of ``left``, the row of ``right`` with equal ``keys`` (int64, null where there is none).

    ``right`` must hold each key once: a repeated key would make the answer ambiguous, so it raises a
    ``ValueError`` naming the key and an example. Null keys never match."""
    keys = list(keys)
    right_keys = list(right_keys) if right_keys is not None else keys
    if len(keys) != len(right_keys):
        raise ValueError(f"lookup needs as many left keys {keys} as right keys {right_keys}")
    for table, side, names in ((left, "left", keys), (right, "right", right_keys)):
        missing = [k for k in names if k not in table.column_names]
        if missing:
            raise ValueError(f"lookup: the {side} table lacks key column(s) {missing}")
    if left.num_rows == 0:
        return pa.array([], pa.int64())
    right_side = pa.table(
        {**{k: right.column(r) for k, r in zip(keys, right_keys, strict=True)},
         _RIGHT_ROW: pa.array(np.arange(right.num_rows, dtype=np.int64))}
    )  # fmt: skip
    if right.num_rows:
        counts = right_side.group_by(keys).aggregate([([], "count_all")])
        repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
        if repeated.num_rows:
            example = {k: repeated.column(k)[0].as_py() for k in keys}
            raise ValueError(
                f"lookup: {repeated.num_rows} key(s) {keys} occur more than once in the right table, "
                f"e.g. {example}"
            )
    left_side = pa.table(
        {**{k: left.column(k) for k in keys}, _LEFT_ROW: pa.array(np.arange(left.num_rows, dtype=np.int64))}
    )
    joined = left_side.join(right_side, keys=keys, join_type="left outer", use_threads=False)
    joined = joined.sort_by(_LEFT_ROW)
    return joined.column(_RIGHT_ROW).combine_chunks()


def take_matched(table: pa.Table, rows: pa.Array) -> pa.Table:
    """``table``'s rows at ``rows``, null positions left out (the inner-join half of a ``lookup``)."""
    return table.take(pc.drop_null(rows))


def matched(rows: pa.Array) -> pa.Array:
    """Positions (int64) of the non-null entries of a ``lookup`` result: the left rows that found a match."""
    return pc.indices_nonzero(pc.is_valid(rows))


def _array(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def map_list_values(
    lists: pa.ChunkedArray | pa.Array, keys: pa.ChunkedArray | pa.Array, values: pa.ChunkedArray | pa.Array
) -> pa.Array:
    """Each element of each list replaced by ``values[i]`` where it equals ``keys[i]``, kept as it is where no
    key matches (list structure, nulls and order kept). ``keys`` are looked up first-match (``pc.index_in``)."""
    array, keys, values = _array(lists), _array(keys), _array(values)
    if pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        array = array.cast(pa.list_(array.type.value_type))
    if len(array) == 0:
        return array
    start, stop = array.offsets[0].as_py(), array.offsets[-1].as_py()
    flat = array.values.slice(start, stop - start)  # aligned with the offsets, null lists' slots included
    position = pc.index_in(flat, value_set=keys)
    mapped = pc.coalesce(pc.take(values.cast(flat.type), position), flat)
    offsets = pc.subtract(array.offsets, array.offsets[0])
    return pa.ListArray.from_arrays(offsets, mapped, mask=pc.is_null(array))


def aligned_columns(
    left: pa.Table, right: pa.Table, keys: Sequence[str], columns: Sequence[str]
) -> dict[str, pa.Array]:
    """``right``'s ``columns`` gathered onto ``left``'s rows by equal ``keys`` (a left outer join in left order):
    one array per column, as long as ``left``, null where ``left``'s key is not in ``right``."""
    rows = lookup(left, right, keys)
    return {c: pc.take(_array(right.column(c)), rows) for c in columns}
