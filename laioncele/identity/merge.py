"""Identity cleaning scaled out by name: partition faces by name key, clean each partition, merge the results.

A name's decision (dominant cluster, runner-up, namesakes) only needs that name's faces, so names can be cleaned
in independent partitions. What crosses partitions is fixed here: two names of one person (aliases) may land in
different partitions, and one face may be kept by identities of two partitions (a caption naming A and B sends
the photo to both). ``merge_partitions`` repeats the global steps that need all identities at once: alias merge
over all centroids, one row per (identity, image), one identity per face, same-bytes copies within an identity,
and the minimum image count. Every image row it removes is a candidate dropped under one reason, so the
accounting ``candidates == kept + sum(drops)`` still holds.
"""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from laioncele.config import IdentityConfig
from laioncele.identity.clean import IdentityResult, _list_column
from laioncele.identity.graph import connected_components, gpu_available, l2_normalise, similar_vector_pairs
from laioncele.identity.inputs import name_key

__all__ = ["merge_partitions", "partition_of", "split_by_partition"]


def partition_of(name: str, partitions: int) -> int:
    """Stable partition of a name: crc32 of its grouping key (the key identity cleaning groups by)."""
    return zlib.crc32(name_key(name).encode("utf-8")) % partitions if partitions > 1 else 0


def split_by_partition(faces: pa.Table, partitions: int, only: int | None = None) -> list[pa.Table]:
    """Faces table -> one table per partition (just partition ``only`` when given). A row goes to every
    partition of its names, carrying only that partition's names; rows without any usable name go to
    partition 0 alone, so they are counted once."""
    if partitions <= 1:
        return [faces]
    names = faces.column("names").combine_chunks()
    if pa.types.is_large_list(names.type):
        names = names.cast(pa.list_(names.type.value_type))
    parent = pc.list_parent_indices(names).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(names)
    encoded = pc.dictionary_encode(flat)
    part_of_raw = np.array(
        [partition_of(s, partitions) if s and name_key(s) else -1 for s in encoded.dictionary.to_pylist()]
        + [-1],
        np.int64,
    )
    code = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    part = part_of_raw[code]  # code -1 -> the trailing -1
    named = np.zeros(faces.num_rows, bool)
    named[parent[part >= 0]] = True
    column = faces.column_names.index("names")
    out = []
    for p in range(partitions) if only is None else [only]:
        sel = part == p
        rows = np.unique(parent[sel])
        if p == 0:
            rows = np.union1d(rows, np.flatnonzero(~named))
        counts = np.bincount(parent[sel], minlength=faces.num_rows)[rows]
        offsets = pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32))
        values = flat.filter(pa.array(sel)).cast(pa.string())
        table = faces.take(pa.array(rows, pa.int64()))
        out.append(table.set_column(column, "names", pa.ListArray.from_arrays(offsets, values)))
    return out


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    flat = pc.list_flatten(array).cast(pa.float32()).to_numpy(zero_copy_only=False)
    return flat.reshape(len(array), -1) if len(array) else np.zeros((0, 0), np.float32)


def _first_per_group(sort_keys: tuple[np.ndarray, ...], group_keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """Mask of the first row of each group under the lexsort order ``sort_keys`` (last key = primary)."""
    order = np.lexsort(sort_keys)
    first = np.ones(len(order), bool)
    if len(order) > 1:
        same = np.ones(len(order) - 1, bool)
        for key in group_keys:
            same &= key[order][1:] == key[order][:-1]
        first[1:] = ~same
    mask = np.zeros(len(order), bool)
    mask[order[first]] = True
    return mask


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables([t for t in tables], promote_options="default")


def merge_partitions(results: list[IdentityResult], config: IdentityConfig | None = None) -> IdentityResult:
    """Combine per-partition cleaning results into the result of one cleaning over all names."""
    config = config or IdentityConfig()
    if not results:
        raise ValueError("merge_partitions needs at least one partition result")
    if len(results) == 1:
        return results[0]
    identities = _concat([r.identities for r in results])
    images = _concat([r.images for r in results])
    names = _concat([r.names for r in results])
    drops: Counter = Counter()
    face_drops: Counter = Counter()
    for r in results:
        drops.update(r.drops)
        face_drops.update(r.face_drops)

    ids = identities.column("identity_id").to_pylist()
    n_ident = len(ids)
    backends = {b for r in results for b in [r.stats.get("backend")] if b}
    backend = next(iter(backends), config.backend)
    if len(backends) > 1:
        raise ValueError(f"partitions cleaned with several backends {sorted(backends)} cannot be merged")
    th = config.thresholds[backend]
    use_gpu = config.use_gpu and gpu_available()

    # 1. Aliases across partitions: centroids that nearly coincide are one person.
    centroids = _matrix(identities.column("centroid")) if n_ident else np.zeros((0, 0), np.float32)
    i, j = similar_vector_pairs(centroids, th.alias_merge, config.alias_exact_max, use_gpu)
    # A split-off runner-up that matches another identity is that person's mislabelled photos: drop it.
    second = np.array([s.endswith("#2") for s in ids], bool)
    known = np.zeros(n_ident, bool)
    known[i[second[i]]] = True
    known[j[second[j]]] = True
    link = ~known[i] & ~known[j]
    component = connected_components(n_ident, i[link], j[link]) if n_ident else np.zeros(0, np.int64)
    old_n = identities.column("n_images").to_numpy().astype(np.int64)
    id_rank = np.argsort(np.argsort(np.array(ids, dtype=object)))
    keeper_mask = _first_per_group((id_rank, -old_n, component), (component,))
    keeper_of_component = np.full(int(component.max()) + 1 if n_ident else 0, -1, np.int64)
    keeper_of_component[component[keeper_mask]] = np.flatnonzero(keeper_mask)
    keeper = keeper_of_component[component]  # identity row -> row of the identity it merges into

    # 2. Image rows: map to their merged identity, then the global one-row / one-face / copies rules.
    index_of = {s: k for k, s in enumerate(ids)}
    old = np.array([index_of[s] for s in images.column("identity_id").to_pylist()], np.int64)
    ident = keeper[old] if len(old) else np.zeros(0, np.int64)
    sims = images.column("similarity").to_numpy(zero_copy_only=False).astype(np.float64)
    sample = pc.dictionary_encode(images.column("sample_id").combine_chunks()).indices.to_numpy(
        zero_copy_only=False
    )
    face_index = images.column("face_index").to_numpy(zero_copy_only=False).astype(np.int64)
    alive = np.ones(images.num_rows, bool)

    def drop(mask: np.ndarray, reason: str) -> None:
        mask = mask & alive
        drops[reason] += int(mask.sum())
        alive[mask] = False

    drop(known[old] if len(old) else alive & False, "runner_up_is_known_person")
    for group, reason in (
        ((ident, sample), "alias_same_image"),
        ((sample, face_index), "face_claimed_by_other_identity"),
    ):
        live = np.flatnonzero(alive)
        first = _first_per_group(
            (-sims[live], *reversed([g[live] for g in group])), tuple(g[live] for g in group)
        )
        drop(np.isin(np.arange(len(alive)), live[~first]), reason)
    if config.hash_column in images.column_names:
        hashes = pc.dictionary_encode(images.column(config.hash_column).combine_chunks())
        code = pc.fill_null(hashes.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        live = np.flatnonzero(alive & (code >= 0))
        first = _first_per_group((-sims[live], code[live], ident[live]), (ident[live], code[live]))
        drop(np.isin(np.arange(len(alive)), live[~first]), "duplicate_image")
    n_images = np.bincount(ident[alive], minlength=n_ident)
    drop(alive & (n_images < config.min_images)[ident], "identity_too_few_images")
    n_images = np.bincount(ident[alive], minlength=n_ident)
    return _assemble(results, identities, images, names, ids, old, ident, sims, alive, keeper, centroids,
                     n_images, drops, face_drops, backend, config)  # fmt: skip


def _assemble(
    results, identities, images, names, ids, old, ident, sims, alive, keeper, centroids, n_images, drops,
    face_drops, backend, config,
) -> IdentityResult:  # fmt: skip
    """Merged output tables and counters from the final per-row state."""
    kept = np.flatnonzero(n_images > 0)  # keepers with rows left, in identity_id order
    kept = kept[np.argsort(np.array([ids[k] for k in kept], dtype=object), kind="stable")]
    # Centroid: members' centroids weighted by the images each still contributes.
    weights = np.bincount(old[alive], minlength=len(ids)).astype(np.float64)
    merged_centroid = np.zeros((len(ids), centroids.shape[1] if centroids.ndim == 2 else 0), np.float64)
    if len(ids):
        np.add.at(merged_centroid, keeper, centroids * weights[:, None])
    merged_centroid = l2_normalise(merged_centroid.astype(np.float32))
    alias_keys: dict[int, set[str]] = {int(k): set() for k in kept}
    aliases: dict[int, set[str]] = {int(k): set() for k in kept}
    for row, (keys, shown) in enumerate(
        zip(
            identities.column("alias_keys").to_pylist(), identities.column("aliases").to_pylist(), strict=True
        )
    ):
        if int(keeper[row]) in alias_keys and weights[row] > 0:
            alias_keys[int(keeper[row])].update(keys)
            aliases[int(keeper[row])].update(shown)
    live = np.flatnonzero(alive)
    sum_sim = np.bincount(ident[live], weights=sims[live], minlength=len(ids))
    min_sim = np.full(len(ids), np.inf)
    np.minimum.at(min_sim, ident[live], sims[live])
    take = pa.array(kept, pa.int64())
    out_ids = identities.column("identity_id").take(take)
    merged = {
        "identity_id": out_ids,
        "name": identities.column("name").take(take),
        "name_key": identities.column("name_key").take(take),
        "aliases": pa.array([sorted(aliases[int(k)]) for k in kept], pa.list_(pa.string())),
        "alias_keys": pa.array([sorted(alias_keys[int(k)]) for k in kept], pa.list_(pa.string())),
        "n_images": pa.array(n_images[kept].astype(np.int32)),
        "centroid": _list_column(merged_centroid[kept]),
        "mean_similarity": pa.array((sum_sim[kept] / np.maximum(n_images[kept], 1)).astype(np.float32)),
        "min_similarity": pa.array(min_sim[kept].astype(np.float32)),
    }
    rest = [c for c in identities.column_names if c not in merged]
    out_identities = pa.table({**merged, **{c: identities.column(c).take(take) for c in rest}})

    rank = np.full(len(ids), -1, np.int64)
    rank[kept] = np.arange(len(kept))
    live = live[np.lexsort((-sims[live], rank[ident[live]]))]
    rows = pa.array(live, pa.int64())
    target = pa.array(ident[live], pa.int64())
    out_images = images.take(rows)
    for column in ("identity_id", "name", "name_key"):
        out_images = out_images.set_column(
            out_images.column_names.index(column), column, identities.column(column).take(target)
        )

    # Names: a name follows its identity into the merge; one whose identity vanished says why.
    surviving = {ids[k] for k in kept}
    new_id = {ids[r]: ids[int(keeper[r])] for r in range(len(ids)) if ids[int(keeper[r])] in surviving}
    outcomes, name_ids = [], []
    for key, outcome, ident_id in zip(
        names.column("name_key").to_pylist(),
        names.column("outcome").to_pylist(),
        names.column("identity_id").to_pylist(),
        strict=True,
    ):
        mapped = new_id.get(ident_id) if ident_id is not None else None
        if outcome == "split" and new_id.get(f"{key}#2") is None:
            outcome = "kept"
        if outcome in ("kept", "split") and mapped is None:
            outcome = "identity_too_few_images"
        outcomes.append(outcome)
        name_ids.append(mapped)
    col = names.column_names
    out_names = names.set_column(col.index("outcome"), "outcome", pa.array(outcomes, pa.string()))
    out_names = out_names.set_column(col.index("identity_id"), "identity_id", pa.array(name_ids, pa.string()))
    name_drops = Counter(o for o in outcomes if o not in ("kept", "split"))

    def total(key: str) -> int:
        return int(sum(int(r.stats.get(key, 0)) for r in results))

    stats = {
        "backend": backend,
        "faces_in": total("faces_in"),  # a face in several partitions counts once per partition
        "faces_used": total("faces_used"),
        "candidates_in": total("candidates_in"),
        "kept": out_images.num_rows,
        "dropped": int(sum(drops.values())),
        "names_in": total("names_in"),
        "identities": out_identities.num_rows,
        "names_merged_as_aliases": int(sum(len(alias_keys[int(k)]) - 1 for k in kept)),
        "names_split": sum(o == "split" for o in outcomes),
        "faiss_gpu": bool(config.use_gpu and gpu_available()),
        "partitions": len(results),
    }
    return IdentityResult(
        out_identities,
        out_images,
        out_names,
        {k: v for k, v in sorted(drops.items()) if v},
        dict(name_drops),
        dict(face_drops),
        stats,
    )
