"""Vectorised similarity-graph primitives for identity cleaning, over many small groups of faces at once.

A *group* is a contiguous run of positions ``starts[g]:ends[g]`` in an array ``rows`` of face-row indices into
an embedding matrix (the faces of one name, of one identity...). At LAION scale there are ~10^5 groups of ~20
faces, so a Python loop with one small matmul per group costs more than the arithmetic: groups are padded to
a power-of-two size and handled as one batched matmul per bucket. Groups too big to pad go to faiss (a GPU
index when available), with the seed graph built on a sample so the cost stays linear in the group size.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

_BATCH_FLOATS = 8_000_000  # floats per padded batch (X and S): ~32 MB each, fits a shared 2-core box
_DOT_CHUNK = 65_536  # rows per chunk when gathering embeddings, so no (n_rows, d) copy is ever built
_GPU_MAX_K = 2048  # faiss GPU knn limit; GPU range search goes through knn


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _flat_index(x: np.ndarray, use_gpu: bool) -> faiss.Index:
    index = faiss.IndexFlatIP(x.shape[1])
    if use_gpu and gpu_available():  # pragma: no cover - faiss-cpu in CI
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(x)
    return index


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("...i,...i->...", x, x))[..., None]
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def segment_bounds(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends of the runs of equal values in an already sorted key array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], len(sorted_keys)]
    return starts, ends


def rowwise_dot(emb: np.ndarray, rows: np.ndarray, vectors: np.ndarray, vector_idx: np.ndarray) -> np.ndarray:
    """``emb[rows[i]] . vectors[vector_idx[i]]`` for every i, gathered in chunks."""
    out = np.empty(len(rows), np.float32)
    for lo in range(0, len(rows), _DOT_CHUNK):
        hi = lo + _DOT_CHUNK
        out[lo:hi] = np.einsum("ij,ij->i", emb[rows[lo:hi]], vectors[vector_idx[lo:hi]])
    return out


def group_centroids(emb: np.ndarray, rows: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """L2-normalised mean embedding per group (zero vector for an empty group), via one sparse matmul."""
    ones = np.ones(len(rows), np.float32)
    member = sparse.csr_matrix((ones, (group, rows)), shape=(n_groups, emb.shape[0]))
    sums = np.asarray(member @ emb, dtype=np.float32)
    return l2_normalise(sums)


def connected_components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` nodes given undirected edges (i, j)."""
    graph = sparse.coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[1]


def _buckets(sizes: np.ndarray, max_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """(group ids, padded size) for groups with 1 <= size <= max_size, bucketed by the next power of two."""
    small = (sizes >= 1) & (sizes <= max_size)
    padded = np.where(small, 1 << np.ceil(np.log2(np.maximum(sizes, 1))).astype(np.int64), 0)
    for k in np.unique(padded[small]):
        yield np.flatnonzero(padded == k), int(k)


def _gram(x: np.ndarray) -> np.ndarray:
    """Per-batch Gram matrices; one BLAS call per matrix once k is large (stacked matmul is slow there)."""
    if x.shape[1] < 64:
        return np.matmul(x, x.transpose(0, 2, 1))
    out = np.empty((x.shape[0], x.shape[1], x.shape[1]), np.float32)
    for b in range(x.shape[0]):
        np.dot(x[b], x[b].T, out=out[b])
    return out


def _padded_batches(
    emb: np.ndarray, rows: np.ndarray, starts: np.ndarray, sizes: np.ndarray, max_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (group ids, positions (B, k), valid mask (B, k), embeddings (B, k, d)) padded with zeros."""
    d = emb.shape[1]
    for groups, k in _buckets(sizes, max_size):
        per_batch = max(1, _BATCH_FLOATS // (k * max(d, k)))
        for lo in range(0, len(groups), per_batch):
            g = groups[lo : lo + per_batch]
            offsets = np.arange(k)
            valid = offsets[None, :] < sizes[g][:, None]
            pos = np.where(valid, starts[g][:, None] + offsets[None, :], 0)
            x = emb[rows[pos]]
            x[~valid] = 0.0
            yield g, pos, valid, x


def seed_centroids(
    emb: np.ndarray,
    rows: np.ndarray,
    image: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    edge: float,
    max_batched: int,
    max_graph: int,
    use_gpu: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per group, the normalised mean of its densest face and that face's graph neighbours.

    The graph joins two faces of a group when their cosine is at least ``edge`` and they come from different
    images (two faces in one photo are two people). The face with most neighbours is the seed: in a noisy name
    it is almost surely the named person, since mislabels scatter over many strangers. Groups larger than
    ``max_batched`` build the graph with faiss on a sample of ``max_graph`` faces.
    """
    n_groups = len(starts)
    sizes = ends - starts
    out = np.zeros((n_groups, emb.shape[1]), np.float32)
    for g, pos, valid, x in _padded_batches(emb, rows, starts, sizes, max_batched):
        img = np.where(valid, image[pos], -1)
        sim = _gram(x)
        adj = (sim >= edge) & valid[:, :, None] & valid[:, None, :] & (img[:, :, None] != img[:, None, :])
        seed = adj.sum(axis=2).argmax(axis=1)
        neighbourhood = adj[np.arange(len(g)), seed]
        neighbourhood[np.arange(len(g)), seed] = True
        out[g] = l2_normalise(np.einsum("bk,bkd->bd", neighbourhood.astype(np.float32), x))
    for g in np.flatnonzero(sizes > max_batched):
        pos = np.arange(starts[g], ends[g])
        if len(pos) > max_graph:
            pos = np.sort(rng.choice(pos, size=max_graph, replace=False))
        x = np.ascontiguousarray(emb[rows[pos]])
        q, n = _neighbour_pairs(x, edge, use_gpu)
        keep = (q != n) & (image[pos[q]] != image[pos[n]])
        q, n = q[keep], n[keep]
        seed = int(np.bincount(q, minlength=len(pos)).argmax())
        members = np.r_[seed, n[q == seed]]
        out[g] = l2_normalise(x[members].sum(axis=0))
    return out


def _neighbour_pairs(x: np.ndarray, threshold: float, use_gpu: bool) -> tuple[np.ndarray, np.ndarray]:
    """All (query, neighbour) index pairs within ``x`` with inner product >= threshold (self pairs included)."""
    if use_gpu and gpu_available():  # pragma: no cover - faiss-cpu in CI
        index = _flat_index(x, True)
        sims, nbrs = index.search(x, min(len(x), _GPU_MAX_K))
        q = np.repeat(np.arange(len(x)), nbrs.shape[1])
        keep = (sims.ravel() >= threshold) & (nbrs.ravel() >= 0)
        return q[keep], nbrs.ravel()[keep]
    index = _flat_index(x, False)
    # faiss returns inner products strictly above the radius; nudge it so ">= threshold" holds.
    lims, _, nbrs = index.range_search(x, float(np.nextafter(np.float32(threshold), np.float32(-2))))
    q = np.repeat(np.arange(len(x)), np.diff(lims.astype(np.int64)))
    return q, nbrs.astype(np.int64)


def within_group_pairs(
    emb: np.ndarray,
    rows: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    threshold: float,
    max_batched: int,
    use_gpu: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Position pairs (i < j) inside one group whose embeddings' cosine is at least ``threshold``."""
    sizes = ends - starts
    found_i, found_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for _, pos, valid, x in _padded_batches(emb, rows, starts, sizes, max_batched):
        sim = _gram(x)
        k = pos.shape[1]
        upper = np.triu(np.ones((k, k), bool), 1)
        b, a, c = np.nonzero((sim >= threshold) & upper & valid[:, :, None] & valid[:, None, :])
        found_i.append(pos[b, a])
        found_j.append(pos[b, c])
    for g in np.flatnonzero(sizes > max_batched):
        pos = np.arange(starts[g], ends[g])
        q, n = _neighbour_pairs(np.ascontiguousarray(emb[rows[pos]]), threshold, use_gpu)
        keep = q < n
        found_i.append(pos[q[keep]])
        found_j.append(pos[n[keep]])
    return np.concatenate(found_i), np.concatenate(found_j)


def similar_vector_pairs(
    x: np.ndarray, threshold: float, exact_max: int, use_gpu: bool, k: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of rows of ``x`` with cosine >= threshold, from a global faiss index.

    Up to ``exact_max`` rows the index is exact (flat); beyond, an IVF index (4*sqrt(n) lists, 16 probed) keeps
    the search sub-quadratic: near-identical vectors share or neighbour a cell, so recall stays high where it
    matters. Each row looks at its ``k`` nearest neighbours: an alias group larger than k still chains.
    """
    n = len(x)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if n <= exact_max:
        index = _flat_index(x, use_gpu)
    else:
        n_lists = int(4 * np.sqrt(n))
        quantizer = faiss.IndexFlatIP(x.shape[1])
        index = faiss.IndexIVFFlat(quantizer, x.shape[1], n_lists, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.add(x)
        index.nprobe = 16
    sims, nbrs = index.search(x, min(k, n))
    q = np.repeat(np.arange(n), nbrs.shape[1])
    nbrs = nbrs.ravel()
    keep = (sims.ravel() >= threshold) & (nbrs >= 0) & (nbrs != q)
    i, j = np.minimum(q[keep], nbrs[keep]), np.maximum(q[keep], nbrs[keep])
    pairs = np.unique(np.stack([i, j], axis=1), axis=0) if len(i) else np.zeros((0, 2), np.int64)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
