"""Corpus-wide name aggregation: which names are frequent enough to download, and which rows to keep for each.

The per-caption logic (``laioncele.names``) says who a caption names; this module works over many captions:
it explodes (sample, names) rows into mentions, counts distinct samples per canonical name, drops rare names
before any download, caps each name at its best rows (highest CLIP similarity), and filters the sample rows
down to the kept (sample, name) pairs. Every function takes and returns Arrow tables, so the same code runs on
one shard in a test and per group inside a Ray Data ``groupby().map_groups``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from laioncele.schema import NAMES_TABLE

MENTIONS = pa.schema(
    [
        pa.field("name_key", pa.string()),
        pa.field("surface_form", pa.string()),
        pa.field("sample_id", pa.string()),
        pa.field("similarity", pa.float32()),
        pa.field("second_pass", pa.bool_()),  # only the corpus-wide second pass found it in this sample
    ]
)


def explode_mentions(samples: pa.Table) -> pa.Table:
    """One row per (sample, name): ``samples`` needs sample_id, names, surface_forms and (optionally) similarity
    and second_pass_names (absent: NER found every name)."""
    if samples.num_rows == 0:
        return MENTIONS.empty_table()
    names = samples.column("names").combine_chunks()
    parent = pc.list_parent_indices(names)
    similarity = (
        samples.column("similarity").cast(pa.float32())
        if "similarity" in samples.column_names
        else pa.nulls(samples.num_rows, pa.float32())
    )
    flat = pc.list_flatten(names)
    if "second_pass_names" in samples.column_names:
        # (row, name) pairs as one string each, so membership is one vectorised lookup
        added = samples.column("second_pass_names").combine_chunks()
        added_pairs = _row_name_pairs(pc.list_parent_indices(added), pc.list_flatten(added))
        second_pass = pc.is_in(_row_name_pairs(parent, flat), value_set=added_pairs)
    else:
        second_pass = pa.array([False] * len(parent), pa.bool_())
    return pa.table(
        {
            "name_key": flat,
            "surface_form": pc.list_flatten(samples.column("surface_forms").combine_chunks()),
            "sample_id": pc.take(samples.column("sample_id"), parent),
            "similarity": pc.take(similarity, parent),
            "second_pass": second_pass,
        },
        schema=MENTIONS,
    )


def _row_name_pairs(rows: pa.Array, names: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(pc.cast(rows, pa.string()), pc.cast(names, pa.string()), "\x00")


def count_names(mentions: pa.Table, min_count: int = 1) -> dict[str, int]:
    """Distinct samples per name key, for names seen in at least ``min_count`` samples."""
    if mentions.num_rows == 0:
        return {}
    distinct = mentions.select(["name_key", "sample_id"]).group_by(["name_key", "sample_id"]).aggregate([])
    counts = distinct.group_by("name_key").aggregate([("sample_id", "count")])
    keys = counts.column("name_key").to_pylist()
    values = counts.column("sample_id_count").to_pylist()
    return {k: int(v) for k, v in zip(keys, values, strict=True) if v >= min_count}


def aggregate_names(
    mentions: pa.Table, min_candidates: int, max_rows_per_name: int, min_ner_share: float = 0.0
) -> tuple[pa.Table, pa.Table]:
    """Names with at least ``min_candidates`` distinct samples, and their kept (name_key, sample_id) pairs.

    Returns (names table with the ``names_table`` schema, kept pairs). Per name, at most ``max_rows_per_name``
    samples are kept: those with the highest LAION CLIP similarity (ties broken by sample_id, so the choice is
    deterministic). The display name is the most frequent surface form (ties: alphabetical).

    A name NER named itself in under ``min_ner_share`` of the samples that mention it keeps only those samples:
    the second pass matches a known name wherever its words occur, so a phrase NER took for a name a few times
    ("Teddy Bear" on a greeting card) would otherwise collect every product that mentions it.
    """
    if mentions.num_rows == 0:
        return NAMES_TABLE.empty_table(), pairs_table([], [])
    order = np.lexsort(
        (
            mentions.column("sample_id").to_numpy(zero_copy_only=False),
            -np.nan_to_num(
                mentions.column("similarity").to_numpy(zero_copy_only=False).astype(float), nan=-1.0
            ),
            mentions.column("name_key").to_numpy(zero_copy_only=False),
        )
    )
    keys = mentions.column("name_key").to_numpy(zero_copy_only=False)[order]
    ids = mentions.column("sample_id").to_numpy(zero_copy_only=False)[order]
    forms = mentions.column("surface_form").to_numpy(zero_copy_only=False)[order]
    second = mentions.column("second_pass").fill_null(False).to_numpy(zero_copy_only=False)[order]
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])

    rows: dict[str, list] = {name: [] for name in NAMES_TABLE.names}
    kept_keys: list[str] = []
    kept_ids: list[str] = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        # Rows of one name, best similarity first; a sample named twice counts once, as NER's if NER named it.
        group_ids = ids[start:end]
        distinct, first, inverse = np.unique(group_ids, return_index=True, return_inverse=True)
        by_ner = np.zeros(len(distinct), dtype=bool)
        np.logical_or.at(by_ner, inverse, ~second[start:end])
        ner_share = float(by_ner.mean())
        order_in_group = np.argsort(first)
        distinct_ids, by_ner = distinct[order_in_group], by_ner[order_in_group]
        if ner_share < min_ner_share:
            distinct_ids, by_ner = distinct_ids[by_ner], by_ner[by_ner]
        if len(distinct_ids) < min_candidates:
            continue
        surface = Counter(forms[start:end].tolist())
        display = min(surface, key=lambda form: (-surface[form], form))
        rows["name_key"].append(keys[start])
        rows["display_name"].append(display)
        rows["surface_forms"].append(sorted(surface))
        rows["n_candidates"].append(len(distinct_ids))
        rows["n_second_pass"].append(int((~by_ner).sum()))
        rows["ner_share"].append(ner_share)
        chosen = distinct_ids[:max_rows_per_name].tolist()
        kept_keys += [keys[start]] * len(chosen)
        kept_ids += chosen
    return pa.table(rows, schema=NAMES_TABLE), pairs_table(kept_keys, kept_ids)


def pairs_table(keys: Iterable[str], ids: Iterable[str]) -> pa.Table:
    """(name_key, sample_id) pairs as a table: the kept rows of each name."""
    return pa.table(
        {"name_key": pa.array(list(keys), pa.string()), "sample_id": pa.array(list(ids), pa.string())}
    )


def select_kept(
    samples: pa.Table, kept: pa.Table, opt_out: frozenset[str] = frozenset()
) -> tuple[pa.Table, Counter]:
    """Restrict each sample's names to its kept (name, sample) pairs; drop samples left without a name.

    ``opt_out`` holds name keys of people who asked to be excluded: removed here, before any download.
    Returns the filtered samples (``names`` and ``n_names`` recomputed) and drop counts by reason.
    """
    drops: Counter[str] = Counter()
    pairs = set(zip(kept.column("name_key").to_pylist(), kept.column("sample_id").to_pylist(), strict=True))
    new_names: list[list[str]] = []
    keep_rows: list[int] = []
    for i, (sample_id, names) in enumerate(
        zip(samples.column("sample_id").to_pylist(), samples.column("names").to_pylist(), strict=True)
    ):
        kept_names = []
        for name in dict.fromkeys(names):
            if name in opt_out:
                drops["opted_out_name"] += 1
            elif (name, sample_id) in pairs:
                kept_names.append(name)
        if kept_names:
            keep_rows.append(i)
            new_names.append(kept_names)
        else:
            drops["no_kept_name"] += 1
    out = samples.take(pa.array(keep_rows, pa.int64()))
    out = out.set_column(
        out.schema.get_field_index("names"), "names", pa.array(new_names, pa.list_(pa.string()))
    )
    n_names = pa.array([len(n) for n in new_names], pa.int32())
    out = out.set_column(out.schema.get_field_index("n_names"), "n_names", n_names)
    return out, drops
