"""Corpus-wide name aggregation: which names are frequent enough to download, and which rows to keep for each.

The per-caption logic (``laioncele.names``) says who a caption names; this module works over many captions:
it explodes (sample, names) rows into mentions, counts distinct samples per canonical name, drops rare names
before any download, caps each name at its best rows (highest CLIP similarity), and filters the sample rows
down to the kept (sample, name) pairs. Every function takes and returns Arrow tables, so the same code runs on
one shard in a test and per group inside a Ray Data ``groupby().map_groups``.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from laioncele.io.joins import lookup
from laioncele.io.schema import NAMES_TABLE

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

    The one-table form of what the pipeline computes shard by shard with ``name_tallies`` / ``merge_tallies``
    without gathering any name's mentions in one place (there, a name listed in more than
    ``names.exact_counts_up_to`` samples is counted per listing: a URL in two LAION files counts twice).
    """
    exact = mentions.num_rows  # one table: every count exact
    tallies = name_tallies(mentions, max_rows_per_name, exact)
    return names_from_tallies(tallies, min_candidates, max_rows_per_name, min_ner_share, exact)


# A name's mergeable summary over a set of listings (one shard's rows, or several shards merged):
# - n_listed / n_ner_listed: distinct samples (all / NER-named) summed over the shards merged;
# - ids / ner_ids: the exact distinct sample ids, kept while n_listed <= exact_up_to (a URL listed in two LAION
#   files is one sample), dropped above it (then the listed sums stand in for the distinct counts);
# - forms / form_counts: surface forms and how many mention rows wrote each;
# - best_*: the best distinct samples (highest similarity first, ties by sample_id), all and NER-named only,
#   each capped at max_rows.
# Merging is associative and commutative, and the final counts depend only on the merged set, so Ray's
# aggregation may merge the shards in any order and give the answer the one-table function gives.
TALLY = pa.struct(
    [
        pa.field("n_listed", pa.int64()),
        pa.field("n_ner_listed", pa.int64()),
        pa.field("ids", pa.list_(pa.string())),
        pa.field("ner_ids", pa.list_(pa.string())),
        pa.field("forms", pa.list_(pa.string())),
        pa.field("form_counts", pa.list_(pa.int64())),
        pa.field("best_ids", pa.list_(pa.string())),
        pa.field("best_similarity", pa.list_(pa.float64())),
        pa.field("best_ner_ids", pa.list_(pa.string())),
        pa.field("best_ner_similarity", pa.list_(pa.float64())),
    ]
)
TALLIES = pa.schema([pa.field("name_key", pa.string()), pa.field("tally", TALLY)])


def empty_tally() -> dict:
    return {field.name: 0 if field.name.startswith("n_") else [] for field in TALLY}


def tally_counts(tally: dict, exact_up_to: int) -> tuple[int, int]:
    """(distinct samples, of which NER-named): exact up to ``exact_up_to`` listings, the listed sums above."""
    if tally["n_listed"] <= exact_up_to:
        return len(tally["ids"]), len(tally["ner_ids"])
    return tally["n_listed"], tally["n_ner_listed"]


def merge_tallies(tallies: Iterable[dict], max_rows: int, exact_up_to: int) -> dict:
    """The tally of the union of the listings behind ``tallies``."""
    tallies = [t for t in tallies if t["n_listed"]]
    if not tallies:
        return empty_tally()
    if len(tallies) == 1:
        return tallies[0]
    counts: Counter[str] = Counter()
    for t in tallies:
        counts.update(dict(zip(t["forms"], t["form_counts"], strict=True)))
    n_listed = sum(t["n_listed"] for t in tallies)
    exact = n_listed <= exact_up_to
    out = {
        "n_listed": n_listed,
        "n_ner_listed": sum(t["n_ner_listed"] for t in tallies),
        "ids": sorted({i for t in tallies for i in t["ids"]}) if exact else [],
        "ner_ids": sorted({i for t in tallies for i in t["ner_ids"]}) if exact else [],
        "forms": sorted(counts),
        "form_counts": [counts[f] for f in sorted(counts)],
    }
    for ids, sims in (("best_ids", "best_similarity"), ("best_ner_ids", "best_ner_similarity")):
        # a sample listed twice has the same id and similarity: keep it once, then cut to max_rows
        candidates = {(-s, i) for t in tallies for s, i in zip(t[sims], t[ids], strict=True)}
        best = heapq.nsmallest(max_rows, candidates)
        out[ids], out[sims] = [i for _, i in best], [-s for s, _ in best]
    return out


def name_tallies(mentions: pa.Table, max_rows: int, exact_up_to: int) -> pa.Table:
    """One tally per name over the mention rows of one table (a sample named twice counts once)."""
    if mentions.num_rows == 0:
        return TALLIES.empty_table()
    similarity = np.nan_to_num(
        mentions.column("similarity").to_numpy(zero_copy_only=False).astype(float), nan=-1.0
    )
    keys = mentions.column("name_key").to_numpy(zero_copy_only=False)
    ids = mentions.column("sample_id").to_numpy(zero_copy_only=False)
    order = np.lexsort((ids, -similarity, keys))
    keys, ids, sims = keys[order], ids[order], similarity[order]
    forms = mentions.column("surface_form").to_numpy(zero_copy_only=False)[order]
    second = mentions.column("second_pass").fill_null(False).to_numpy(zero_copy_only=False)[order]
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    out_keys, tallies = [], []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        # Rows of one name, best similarity first; a sample named twice counts once, as NER's if NER named it.
        distinct, first, inverse = np.unique(ids[start:end], return_index=True, return_inverse=True)
        by_ner = np.zeros(len(distinct), dtype=bool)
        np.logical_or.at(by_ner, inverse, ~second[start:end])
        in_order = np.argsort(first)
        best_ids, best_ner, best_sims = distinct[in_order], by_ner[in_order], sims[start:end][first[in_order]]
        exact = len(distinct) <= exact_up_to
        counts = Counter(forms[start:end].tolist())
        out_keys.append(keys[start])
        tallies.append(
            {
                "n_listed": len(distinct),
                "n_ner_listed": int(by_ner.sum()),
                "ids": distinct.tolist() if exact else [],
                "ner_ids": distinct[by_ner].tolist() if exact else [],
                "forms": sorted(counts),
                "form_counts": [counts[f] for f in sorted(counts)],
                "best_ids": best_ids[:max_rows].tolist(),
                "best_similarity": best_sims[:max_rows].tolist(),
                "best_ner_ids": best_ids[best_ner][:max_rows].tolist(),
                "best_ner_similarity": best_sims[best_ner][:max_rows].tolist(),
            }
        )
    return pa.table({"name_key": out_keys, "tally": pa.array(tallies, TALLY)}, schema=TALLIES)


def name_buckets(keys: pa.Array | pa.ChunkedArray, n_buckets: int) -> np.ndarray:
    """The bucket (0 .. n_buckets-1) of each name key: a seeded hash, the same in every process of a run."""
    if n_buckets == 1 or len(keys) == 0:
        return np.zeros(len(keys), dtype=np.int64)
    import polars as pl

    hashes = pl.Series(keys if isinstance(keys, pa.Array) else keys.combine_chunks()).hash(seed=0)
    return (hashes % n_buckets).to_numpy().astype(np.int64)


def split_by_bucket(table: pa.Table, n_buckets: int, key: str = "name_key") -> list[pa.Table]:
    """``table``'s rows in ``n_buckets`` tables by ``name_buckets`` of ``key``, each compact (its own buffers)."""
    buckets = name_buckets(table.column(key), n_buckets)
    order = np.argsort(buckets, kind="stable")
    ends = np.cumsum(np.bincount(buckets, minlength=n_buckets))
    starts = np.r_[0, ends[:-1]]
    return [table.take(pa.array(order[a:b])) for a, b in zip(starts, ends, strict=True)]


def mention_key_counts(mentions: pa.Table) -> pa.Table:
    """Mention rows per name key (``name_key``, ``count``): what decides which names are worth a tally."""
    counts = mentions.select(["name_key"]).group_by("name_key").aggregate([("name_key", "count")])
    return counts.rename_columns(["name_key", "count"])


class KeyCountFold:
    """Sums ``mention_key_counts`` tables folded in one at a time (one shard's share of a bucket each).

    The pieces wait in a list until they hold as many rows as the running sum, then merge into it, so the
    state stays within ~2x the distinct keys seen plus one piece, however many pieces come.
    ``max_rows_held`` records the most rows it held at once.
    """

    def __init__(self) -> None:
        self._sum: pa.Table | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.max_rows_held = 0

    def add(self, counts: pa.Table) -> None:
        self._pending.append(counts.select(["name_key", "count"]))
        self._pending_rows += counts.num_rows
        held = self._pending_rows + (self._sum.num_rows if self._sum is not None else 0)
        self.max_rows_held = max(self.max_rows_held, held)
        if self._pending_rows >= max(self._sum.num_rows if self._sum is not None else 0, 1024):
            self._compact()

    def _compact(self) -> None:
        parts = ([self._sum] if self._sum is not None else []) + self._pending
        self._pending, self._pending_rows = [], 0
        if parts:
            merged = pa.concat_tables(parts).group_by("name_key").aggregate([("count", "sum")])
            self._sum = merged.rename_columns(["name_key", "count"])

    def at_least(self, floor: int) -> pa.Array:
        """The keys whose summed count reaches ``floor``."""
        self._compact()
        if self._sum is None:
            return pa.array([], pa.string())
        kept = self._sum.filter(pc.greater_equal(self._sum.column("count"), floor))
        return kept.column("name_key").combine_chunks()


def _tally_size(tally: dict) -> int:
    return sum(len(tally[f]) for f in ("ids", "ner_ids", "forms", "best_ids", "best_ner_ids"))


class TallyFold:
    """``merge_tallies`` of tally tables (``TALLIES``) folded in one at a time, one tally per name held.

    Each name's running tally is capped (``max_rows`` best samples, ids only up to ``exact_up_to``
    listings), so the state is bounded by the names folded, not by their mentions: a name written in every
    shard of the corpus holds what a name written in one shard holds. ``max_held`` records the most list
    entries (ids, forms, best samples) held at once.
    """

    def __init__(self, max_rows: int, exact_up_to: int) -> None:
        self.max_rows, self.exact_up_to = max_rows, exact_up_to
        self.merged: dict[str, dict] = {}
        self.held = self.max_held = 0

    def add(self, tallies: pa.Table) -> None:
        if tallies.num_rows == 0:
            return
        keys = tallies.column("name_key").to_pylist()
        for key, tally in zip(keys, tallies.column("tally").to_pylist(), strict=True):
            previous = self.merged.get(key)
            if previous is None:
                merged = tally
            else:
                merged = merge_tallies([previous, tally], self.max_rows, self.exact_up_to)
                self.held -= _tally_size(previous)
            self.merged[key] = merged
            self.held += _tally_size(merged)
        self.max_held = max(self.max_held, self.held)

    def table(self) -> pa.Table:
        """One tally per name folded so far (``TALLIES``)."""
        return pa.table(
            {"name_key": list(self.merged), "tally": pa.array(list(self.merged.values()), TALLY)},
            schema=TALLIES,
        )


def names_from_tallies(
    tallies: pa.Table,
    min_candidates: int,
    max_rows_per_name: int,
    min_ner_share: float,
    exact_up_to: int,
) -> tuple[pa.Table, pa.Table]:
    """The names table and kept pairs (see ``aggregate_names``) from one tally per name, sorted by name key."""
    rows: dict[str, list] = {name: [] for name in NAMES_TABLE.names}
    kept_keys: list[str] = []
    kept_ids: list[str] = []
    tallies = tallies.sort_by("name_key") if tallies.num_rows else tallies
    for key, tally in zip(
        tallies.column("name_key").to_pylist(), tallies.column("tally").to_pylist(), strict=True
    ):
        n_samples, n_ner = tally_counts(tally, exact_up_to)
        ner_share = n_ner / n_samples if n_samples else 0.0
        confirmed = ner_share >= min_ner_share
        n_candidates = n_samples if confirmed else n_ner
        if n_candidates < min_candidates:
            continue
        counts = dict(zip(tally["forms"], tally["form_counts"], strict=True))
        rows["name_key"].append(key)
        rows["display_name"].append(min(counts, key=lambda form: (-counts[form], form)))
        rows["surface_forms"].append(sorted(counts))
        rows["n_candidates"].append(n_candidates)
        rows["n_second_pass"].append(n_samples - n_ner if confirmed else 0)
        rows["ner_share"].append(ner_share)
        chosen = (tally["best_ids"] if confirmed else tally["best_ner_ids"])[:max_rows_per_name]
        kept_keys += [key] * len(chosen)
        kept_ids += chosen
    return pa.table(rows, schema=NAMES_TABLE), pairs_table(kept_keys, kept_ids)


def with_kept_ids(names: pa.Table, kept: pa.Table) -> pa.Table:
    """``names`` (one row per name key) with ``kept_ids``: the sample ids of that name's kept (name_key,
    sample_id) pairs in ``kept``, in their order there (an empty list for a name with none)."""
    grouped = kept.select(["name_key", "sample_id"]).group_by("name_key", use_threads=False)
    grouped = grouped.aggregate([("sample_id", "list")])
    ids = pc.take(grouped.column("sample_id_list"), lookup(names, grouped, ["name_key"]))
    ids = pc.coalesce(ids, pa.scalar([], ids.type)).cast(pa.list_(pa.string()))
    return names.append_column("kept_ids", ids)


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
    names = samples.column("names").combine_chunks()
    parent = pc.list_parent_indices(names)
    flat = pc.list_flatten(names)
    # each key once per sample, at its first place: a caption naming someone twice is one pair
    places = pa.table({"row": parent, "name": flat, "place": pa.array(np.arange(len(flat), dtype=np.int64))})
    first = places.group_by(["row", "name"], use_threads=False).aggregate([("place", "min")])
    once = pc.is_in(places.column("place").combine_chunks(), value_set=first.column("place_min"))
    opted = pc.and_(once, pc.is_in(flat, value_set=pa.array(sorted(opt_out), pa.string())))
    if n_opted := int(pc.sum(opted).as_py() or 0):
        drops["opted_out_name"] = n_opted
    pair = _row_name_pairs(pc.take(samples.column("sample_id").combine_chunks(), parent), flat)
    kept_pairs = _row_name_pairs(kept.column("sample_id"), kept.column("name_key"))
    keep = pc.and_(pc.and_(once, pc.invert(opted)), pc.is_in(pair, value_set=kept_pairs))
    kept_parent = pc.filter(parent, keep).to_numpy(zero_copy_only=False)
    counts = np.bincount(kept_parent, minlength=samples.num_rows)
    rows = np.flatnonzero(counts)
    if samples.num_rows > len(rows):
        drops["no_kept_name"] = samples.num_rows - len(rows)
    offsets = np.concatenate([[0], np.cumsum(counts[rows])]).astype(np.int32)
    new_names = pa.ListArray.from_arrays(pa.array(offsets), pc.filter(flat, keep).cast(pa.string()))
    out = samples.take(pa.array(rows, pa.int64()))
    out = out.set_column(out.schema.get_field_index("names"), "names", new_names)
    n_names = pa.array(counts[rows], pa.int32())
    out = out.set_column(out.schema.get_field_index("n_names"), "n_names", n_names)
    return out, drops
