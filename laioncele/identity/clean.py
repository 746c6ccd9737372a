"""Identity cleaning: (name, face embeddings) from noisy web captions -> pure per-person face sets.

Per name, the faces of every image whose caption carries the name form a cosine-similarity graph; its densest
face seeds the dominant cluster, refined as "faces close to the centroid, one per image". The name is kept only
when that cluster is unambiguous: enough images, a fair share of the name's images, and clearly larger than
the runner-up found among the images where the dominant person is absent (a co-star who shares photos with
the dominant person does not count against it; a namesake with photos of their own does). Identities of
different names whose centroids nearly coincide are one person under aliases and merge. Within an identity,
copies of one photo collapse to one.

The unit of accounting is a *candidate*: one (image, name) pair with at least one usable face. Each candidate
ends kept (one row of ``images``) or dropped under exactly one reason, so ``candidates == kept + sum(drops)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from laioncele.config import IdentityConfig, IdentityThresholds
from laioncele.identity.graph import (
    connected_components,
    gpu_available,
    group_centroids,
    rowwise_dot,
    seed_centroids,
    segment_bounds,
    similar_vector_pairs,
    within_group_pairs,
)
from laioncele.identity.inputs import FaceInput, name_key, read_faces

__all__ = ["IdentityResult", "clean_identities", "name_key", "thresholds_for"]

# Candidate outcomes; index 0 is "kept".
REASONS = (
    "kept",
    "name_too_few_images",  # the name has fewer faced images than min_images: no identity possible
    "name_no_dominant_identity",  # its largest consistent cluster has fewer than min_images images
    "name_low_share",  # that cluster is a small share of the name's images
    "name_ambiguous",  # a runner-up of comparable size: two people share the name
    "no_matching_face",  # name kept, but the image's only face is not that person
    "no_matching_face_multi",  # name kept, several faces, none is that person
    "alias_same_image",  # the image is kept already under an alias of the same identity
    "face_claimed_by_other_identity",  # the same face fits another identity better
    "duplicate_image",  # a copy (same bytes or near-identical face) of a kept image of the identity
    "identity_too_few_images",  # after collapsing duplicates the identity fell below min_images
    "runner_up_is_known_person",  # split-off runner-up matches another name's identity (mislabels, no namesake)
)
_R = {reason: code for code, reason in enumerate(REASONS)}


@dataclass
class IdentityResult:
    identities: pa.Table  # one row per identity
    images: pa.Table  # one row per kept image: its one face for that identity
    names: pa.Table  # one row per name key: its outcome
    drops: dict[str, int]  # dropped candidates (image, name) by reason
    name_drops: dict[str, int]  # dropped names by reason
    face_drops: dict[str, int]  # unusable input faces by reason
    stats: dict[str, float | int | str] = field(default_factory=dict)


def thresholds_for(faces: pa.Table, config: IdentityConfig) -> tuple[str, IdentityThresholds]:
    """The backend's thresholds: a uniform ``backend`` column wins over ``config.backend``."""
    backend = config.backend
    if "backend" in faces.column_names:
        values = [v for v in pc.unique(faces.column("backend")).to_pylist() if v is not None]
        if len(values) > 1:
            raise ValueError(
                f"faces from several backends {values} cannot be compared; clean them separately"
            )
        if values:
            backend = values[0]
    if backend not in config.thresholds:
        raise ValueError(
            f"no identity thresholds for face backend {backend!r}; known: {list(config.thresholds)}"
        )
    return backend, config.thresholds[backend]


def _best_per_segment(values: np.ndarray, allowed: np.ndarray, seg: np.ndarray, n_seg: int) -> np.ndarray:
    """Mask of the highest-valued allowed position of each segment (first on ties); ``seg`` is sorted."""
    idx = np.flatnonzero(allowed)
    if len(idx) == 0:
        return np.zeros(len(values), bool)
    order = idx[np.lexsort((-values[idx], seg[idx]))]
    first = order[np.r_[True, seg[order][1:] != seg[order][:-1]]]
    out = np.zeros(len(values), bool)
    out[first] = True
    return out


@dataclass
class _Pairs:
    """(face, name) pairs sorted by (name, image, face), with their segment (= candidate) ids."""

    face: np.ndarray
    key: np.ndarray
    image: np.ndarray
    raw: np.ndarray
    seg: np.ndarray  # candidate id, 0..n_seg-1, sorted
    n_seg: int
    group: np.ndarray  # dense name-group id, sorted
    group_key: np.ndarray  # group id -> key code
    group_images: np.ndarray  # group id -> number of candidates (faced images)


def _sorted_pairs(data: FaceInput) -> _Pairs:
    image = data.image[data.pair_face]
    order = np.lexsort((data.pair_face, image, data.pair_key))
    face, key, image, raw = data.pair_face[order], data.pair_key[order], image[order], data.pair_raw[order]
    new_seg = (
        np.r_[True, (key[1:] != key[:-1]) | (image[1:] != image[:-1])] if len(key) else np.zeros(0, bool)
    )
    seg = np.cumsum(new_seg) - 1
    starts, _ = segment_bounds(key)
    group = np.cumsum(np.r_[True, key[1:] != key[:-1]]) - 1 if len(key) else np.zeros(0, np.int64)
    group_images = np.add.reduceat(new_seg.astype(np.int64), starts) if len(key) else np.zeros(0, np.int64)
    return _Pairs(face, key, image, raw, seg, int(new_seg.sum()), group, key[starts], group_images)


def _cluster(
    data: FaceInput,
    pairs: _Pairs,
    allowed: np.ndarray,
    n_groups: int,
    th: IdentityThresholds,
    config: IdentityConfig,
    iterations: int,
    use_gpu: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per name group: (centroid, similarity of every pair to its group's centroid, member mask).

    Members are, per image, the allowed face closest to the centroid, if it reaches ``th.keep``.
    """
    sub = np.flatnonzero(allowed)
    starts, ends = segment_bounds(pairs.group[sub])
    centroids = np.zeros((n_groups, data.embeddings.shape[1]), np.float32)
    if len(sub):
        centroids[pairs.group[sub[starts]]] = seed_centroids(
            data.embeddings,
            pairs.face[sub],
            pairs.image[sub],
            starts,
            ends,
            th.edge,
            config.max_batched_faces,
            config.max_graph_faces,
            use_gpu,
            rng,
        )
    for step in range(iterations + 1):
        sims = rowwise_dot(data.embeddings, pairs.face, centroids, pairs.group)
        members = _best_per_segment(sims, allowed & (sims >= th.keep), pairs.seg, pairs.n_seg)
        if step == iterations:
            break
        refined = group_centroids(data.embeddings, pairs.face[members], pairs.group[members], n_groups)
        has_members = np.bincount(pairs.group[members], minlength=n_groups) > 0
        centroids[has_members] = refined[has_members]
    return centroids, sims, members


def _decide_names(
    pairs: _Pairs, dominant: np.ndarray, runner_up: np.ndarray, config: IdentityConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per name group: (reason code, keep-runner-up-as-second-identity flag)."""
    n_images = pairs.group_images
    share = dominant / np.maximum(n_images, 1)
    ambiguous = runner_up > config.max_runner_up_ratio * dominant
    second_ok = (runner_up >= config.min_images) & (runner_up / np.maximum(n_images, 1) >= config.min_share)
    split = (config.namesake_policy == "split") & second_ok
    reason = np.zeros(len(n_images), np.int64)
    reason[ambiguous & ~(split & ambiguous)] = _R["name_ambiguous"]
    reason[share < config.min_share] = _R["name_low_share"]
    reason[dominant < config.min_images] = _R["name_no_dominant_identity"]
    reason[n_images < config.min_images] = _R["name_too_few_images"]
    return reason, split & (reason == 0)


def clean_identities(faces: pa.Table, config: IdentityConfig | None = None) -> IdentityResult:
    """Turn a faces table (one row per face, with the caption's names) into identities and kept images."""
    config = config or IdentityConfig()
    backend, th = thresholds_for(faces, config)
    use_gpu = config.use_gpu and gpu_available()
    rng = np.random.default_rng(config.seed)
    data = read_faces(faces)
    pairs = _sorted_pairs(data)
    n_groups = len(pairs.group_key)

    # 1. Dominant cluster per name (names too small for an identity are skipped outright).
    big_enough = (pairs.group_images >= config.min_images)[pairs.group]
    it = config.refine_iterations
    c1, sims1, members1 = _cluster(data, pairs, big_enough, n_groups, th, config, it, use_gpu, rng)
    dominant = np.bincount(pairs.group[members1], minlength=n_groups)
    # 2. Runner-up among the images where the dominant person is absent.
    seg_has_dominant = np.bincount(pairs.seg[members1], minlength=pairs.n_seg) > 0
    residual = big_enough & ~seg_has_dominant[pairs.seg] & (dominant >= config.min_images)[pairs.group]
    _, sims2, members2 = _cluster(data, pairs, residual, n_groups, th, config, 1, use_gpu, rng)
    runner_up = np.bincount(pairs.group[members2], minlength=n_groups)
    name_reason, split = _decide_names(pairs, dominant, runner_up, config)

    # 3. Candidates of kept names: their members become identity rows (pre-identity = group, or group + split).
    seg_reason = np.full(pairs.n_seg, -1, np.int64)
    seg_group = pairs.group[segment_bounds(pairs.seg)[0]] if pairs.n_seg else np.zeros(0, np.int64)
    seg_reason[name_reason[seg_group] > 0] = name_reason[seg_group][name_reason[seg_group] > 0]
    keep1 = members1 & (name_reason[pairs.group] == 0)
    keep2 = members2 & split[pairs.group]
    rows = np.r_[np.flatnonzero(keep1), np.flatnonzero(keep2)]  # pair positions
    is_second = np.arange(len(rows)) >= np.count_nonzero(keep1)
    pre_ident = np.r_[pairs.group[keep1], n_groups + pairs.group[keep2]]
    seg_size = np.bincount(pairs.seg, minlength=pairs.n_seg)
    unmatched = seg_reason < 0
    unmatched[pairs.seg[rows]] = False
    seg_reason[unmatched] = np.where(
        seg_size[unmatched] > 1, _R["no_matching_face_multi"], _R["no_matching_face"]
    )

    # 4. Aliases: identities whose centroids nearly coincide are one person.
    pre_ids, pre_ident = np.unique(pre_ident, return_inverse=True)
    pre_centroids = group_centroids(data.embeddings, pairs.face[rows], pre_ident, len(pre_ids))
    i, j = similar_vector_pairs(pre_centroids, th.alias_merge, config.alias_exact_max, use_gpu)
    # A split-off runner-up that is another name's person is that person's mislabelled photos (a co-star
    # alone under the star's name), not a namesake: drop it instead of making the star's name their alias.
    second = pre_ids >= n_groups
    known = np.zeros(len(pre_ids), bool)
    known[i[second[i]]] = True
    known[j[second[j]]] = True
    if known.any():
        gone = known[pre_ident]
        seg_reason[pairs.seg[rows[gone]]] = _R["runner_up_is_known_person"]
        rows, is_second, pre_ident = rows[~gone], is_second[~gone], pre_ident[~gone]
        remap = np.cumsum(~known) - 1
        keep_pair = ~known[i] & ~known[j]
        i, j, pre_ident = remap[i[keep_pair]], remap[j[keep_pair]], remap[pre_ident]
        pre_ids = pre_ids[~known]
    merged = connected_components(len(pre_ids), i, j) if len(pre_ids) else np.zeros(0, np.int64)
    ident = merged[pre_ident]
    n_ident = int(merged.max()) + 1 if len(merged) else 0
    centroids = group_centroids(data.embeddings, pairs.face[rows], ident, n_ident)
    sims = rowwise_dot(data.embeddings, pairs.face[rows], centroids, ident)

    # 5. One row per (identity, image), then one identity per face, then collapse copies within an identity.
    alive = np.ones(len(rows), bool)

    def drop(mask: np.ndarray, reason: str) -> None:
        seg_reason[pairs.seg[rows[mask]]] = _R[reason]
        alive[mask] = False

    order = np.lexsort((-sims, pairs.image[rows], ident))
    first = np.r_[True, (np.diff(ident[order]) != 0) | (np.diff(pairs.image[rows][order]) != 0)][: len(order)]
    drop(order[~first], "alias_same_image")
    face = pairs.face[rows]
    live = np.flatnonzero(alive)
    order = live[np.lexsort((-sims[live], face[live]))]
    first = np.r_[True, np.diff(face[order]) != 0][: len(order)]
    drop(order[~first], "face_claimed_by_other_identity")
    _collapse_duplicates(faces, data, pairs, rows, ident, sims, alive, th, config, use_gpu, drop)

    # 6. Identities that copies shrank below the minimum go.
    n_images = np.bincount(ident[alive], minlength=n_ident)
    drop(alive & (n_images < config.min_images)[ident], "identity_too_few_images")
    n_images = np.bincount(ident[alive], minlength=n_ident)
    seg_reason[pairs.seg[rows[alive]]] = _R["kept"]
    return _assemble(
        faces, data, pairs, backend, config, rows, is_second, ident, sims, alive, centroids, n_images,
        dominant, runner_up, name_reason, split, seg_reason,
    )  # fmt: skip


def _list_column(matrix: np.ndarray) -> pa.Array:
    """Rows of a float32 matrix as a list<float32> column, without a Python loop."""
    offsets = np.arange(0, matrix.size + 1, max(matrix.shape[1], 1), dtype=np.int32)[: len(matrix) + 1]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.ravel().astype(np.float32)))


def _collapse_duplicates(faces, data, pairs, rows, ident, sims, alive, th, config, use_gpu, drop) -> None:
    """Within an identity keep one image per same-bytes hash, then one per near-identical face cluster."""
    if config.hash_column in faces.column_names:
        hashes = pc.dictionary_encode(faces.column(config.hash_column).combine_chunks())
        codes = pc.fill_null(hashes.indices, -1).to_numpy(zero_copy_only=False)
        code = codes[data.source_row[pairs.face[rows]]]
        live = np.flatnonzero(alive & (code >= 0))
        order = live[np.lexsort((-sims[live], code[live], ident[live]))]
        first = np.r_[True, (np.diff(ident[order]) != 0) | (np.diff(code[order]) != 0)] if len(order) else []
        drop(order[~np.asarray(first, bool)], "duplicate_image")
    live = np.flatnonzero(alive)
    order = live[np.argsort(ident[live], kind="stable")]
    starts, ends = segment_bounds(ident[order])
    a, b = within_group_pairs(
        data.embeddings,
        pairs.face[rows[order]],
        starts,
        ends,
        th.duplicate,
        config.max_batched_faces,
        use_gpu,
    )
    if len(a) == 0:
        return
    component = connected_components(len(order), a, b)
    best = np.lexsort((-sims[order], component))
    first = np.r_[True, component[best][1:] != component[best][:-1]]
    drop(order[best[~first]], "duplicate_image")


def _assemble(
    faces, data, pairs, backend, config, rows, is_second, ident, sims, alive, centroids, n_images,
    dominant, runner_up, name_reason, split, seg_reason,
) -> IdentityResult:  # fmt: skip
    """Build the output tables and counters from the final per-row state."""
    n_ident = len(n_images)
    n_groups = len(pairs.group_key)
    key_of_row = pairs.key[rows]
    # Display name of an identity: its name key with most kept images (a split runner-up gets "#2").
    live = np.flatnonzero(alive)
    primary_key = np.full(n_ident, -1, np.int64)
    primary_second = np.zeros(n_ident, bool)
    alias_keys: list[set[int]] = [set() for _ in range(n_ident)]
    if len(live):
        combo = np.stack([ident[live], key_of_row[live], is_second[live].astype(np.int64)], axis=1)
        uniq, counts = np.unique(combo, axis=0, return_counts=True)
        for (idn, key, sec), _ in sorted(
            zip(uniq.tolist(), counts.tolist(), strict=True), key=lambda t: -t[1]
        ):
            alias_keys[idn].add(key)
            if primary_key[idn] < 0:
                primary_key[idn], primary_second[idn] = key, bool(sec)
    kept_ident = np.flatnonzero(n_images > 0)
    ident_id = {
        int(i): data.key_names[primary_key[i]] + ("#2" if primary_second[i] else "") for i in kept_ident
    }

    group_of_key = {int(k): g for g, k in enumerate(pairs.group_key.tolist())}
    sum_sim = np.bincount(ident[live], weights=sims[live], minlength=n_ident)
    min_sim = np.full(n_ident, np.inf)
    np.minimum.at(min_sim, ident[live], sims[live])
    pk_groups = np.array([group_of_key[int(primary_key[i])] for i in kept_ident], np.int64)
    identities = pa.table(
        {
            "identity_id": pa.array([ident_id[int(i)] for i in kept_ident], pa.string()),
            "name": pa.array([data.key_display[primary_key[i]] for i in kept_ident], pa.string()),
            "name_key": pa.array([data.key_names[primary_key[i]] for i in kept_ident], pa.string()),
            "aliases": pa.array(
                [sorted(data.key_display[k] for k in alias_keys[i]) for i in kept_ident], pa.list_(pa.string())
            ),
            "alias_keys": pa.array(
                [sorted(data.key_names[k] for k in alias_keys[i]) for i in kept_ident], pa.list_(pa.string())
            ),
            "n_images": pa.array(n_images[kept_ident].astype(np.int32)),
            "centroid": _list_column(centroids[kept_ident]),
            "mean_similarity": pa.array((sum_sim[kept_ident] / n_images[kept_ident]).astype(np.float32)),
            "min_similarity": pa.array(min_sim[kept_ident].astype(np.float32)),
            "n_name_images": pa.array(pairs.group_images[pk_groups].astype(np.int32)),
            "share": pa.array((dominant[pk_groups] / np.maximum(pairs.group_images[pk_groups], 1)).astype(np.float32)),
            "runner_up_share": pa.array((runner_up[pk_groups] / np.maximum(dominant[pk_groups], 1)).astype(np.float32)),
            "backend": pa.array([backend] * len(kept_ident), pa.string()),
        }
    )  # fmt: skip

    live = live[np.lexsort((-sims[live], ident[live]))]
    src = data.source_row[pairs.face[rows[live]]]
    carried = [c for c in faces.column_names if c not in ("sample_id", "face_index", "names", "embedding")]
    images = pa.table(
        {
            "sample_id": data.sample_ids.take(pa.array(pairs.image[rows[live]])).cast(pa.string()),
            "face_index": faces.column("face_index").take(pa.array(src)).cast(pa.int32()),
            "identity_id": pa.array([ident_id[int(i)] for i in ident[live]], pa.string()),
            "name": pa.array([data.key_display[primary_key[i]] for i in ident[live]], pa.string()),
            "name_key": pa.array([data.key_names[primary_key[i]] for i in ident[live]], pa.string()),
            "caption_name": pa.array([data.key_display[k] for k in key_of_row[live]], pa.string()),
            "similarity": pa.array(sims[live].astype(np.float32)),
            **{c: faces.column(c).take(pa.array(src)) for c in carried},
        }
    )

    # Names: outcome per key; a kept name whose identity later vanished reports why.
    name_outcome = [REASONS[r] if r else "kept" for r in name_reason.tolist()]
    second_ids = {v for v in ident_id.values() if v.endswith("#2")}
    for g in np.flatnonzero(split):
        name_outcome[g] = "split" if data.key_names[pairs.group_key[g]] + "#2" in second_ids else "kept"
    group_ident = {}
    for idn in kept_ident:
        for k in alias_keys[idn]:
            group_ident.setdefault(group_of_key[k], ident_id[int(idn)])
    for g in range(n_groups):
        if name_outcome[g] in ("kept", "split") and g not in group_ident:
            name_outcome[g] = "identity_too_few_images"
    names = pa.table(
        {
            "name_key": pa.array([data.key_names[k] for k in pairs.group_key], pa.string()),
            "name": pa.array([data.key_display[k] for k in pairs.group_key], pa.string()),
            "n_images": pa.array(pairs.group_images.astype(np.int32)),
            "dominant_images": pa.array(dominant.astype(np.int32)),
            "runner_up_images": pa.array(runner_up.astype(np.int32)),
            "outcome": pa.array(name_outcome, pa.string()),
            "identity_id": pa.array([group_ident.get(g) for g in range(n_groups)], pa.string()),
        }
    )
    drops = Counter(REASONS[r] for r in seg_reason.tolist() if r > 0)
    name_drops = Counter(o for o in name_outcome if o not in ("kept", "split"))
    n_merged_names = sum(len(alias_keys[i]) - 1 for i in kept_ident)
    stats = {
        "backend": backend,
        "faces_in": faces.num_rows,
        "faces_used": len(data.source_row),
        "candidates_in": pairs.n_seg,
        "kept": images.num_rows,
        "dropped": int(sum(drops.values())),
        "names_in": n_groups,
        "identities": identities.num_rows,
        "names_merged_as_aliases": int(n_merged_names),
        "names_split": sum(o == "split" for o in name_outcome),
        "faiss_gpu": bool(config.use_gpu and gpu_available()),
    }
    return IdentityResult(
        identities, images, names, dict(drops), dict(name_drops), dict(data.face_drops), stats
    )
