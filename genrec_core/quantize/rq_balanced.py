"""Balanced residual k-means (OneRec): every level's clusters hold at most ceil(n / K) training items.

Each level starts from `faiss.Kmeans` centroids, then alternates a capacity-constrained assignment
with a centroid update. The assignment is the greedy one over (distance, item, cluster) pairs in
increasing order, computed with vectorised deferred acceptance (`balanced_assign`); the plain
Python greedy (`balanced_assign_reference`) is what tests hold it to.

Encoding new items is the plain nearest-centroid residual descent of rq_kmeans: capacities only
exist for the training sample. `fit_codes` keeps the balanced training assignment.
"""
from __future__ import annotations

import numpy as np

from genrec_core.quantize.base import register
from genrec_core.quantize.rq_kmeans import ResidualCodebooks, effective_codebook_size


def capacity(n_items: int, k: int) -> int:
    return -(-n_items // k)


def balanced_assign(dist: np.ndarray, cap: int) -> np.ndarray:
    """dist float [n, k] -> int64 [n] cluster per item, at most `cap` items per cluster (k*cap >= n).

    Items propose to clusters in their order of preference; a cluster keeps its `cap` best proposers
    so far. Both sides rank by the same (distance, item, cluster) key, so this deferred acceptance
    ends in the unique stable matching, which is the global greedy one."""
    n, k = dist.shape
    if k * cap < n:
        raise ValueError(f"{k} clusters of capacity {cap} cannot hold {n} items")
    prefs = np.argsort(dist, axis=1, kind="stable")
    next_choice = np.zeros(n, dtype=np.int64)
    assign = np.full(n, -1, dtype=np.int64)
    free = np.arange(n)
    while free.size:
        proposed = prefs[free, next_choice[free]]
        next_choice[free] += 1
        # Only clusters that got proposals can change; re-rank just their holders.
        touched = np.zeros(k, dtype=bool)
        touched[proposed] = True
        held = np.flatnonzero((assign >= 0) & touched[np.maximum(assign, 0)])
        items = np.concatenate([held, free])
        clusters = np.concatenate([assign[held], proposed])
        keep = _best_per_cluster(items, clusters, dist[items, clusters], cap)
        assign[items[keep]] = clusters[keep]
        assign[items[~keep]] = -1
        free = np.sort(items[~keep])
    return assign


def _best_per_cluster(items, clusters, values, cap: int) -> np.ndarray:
    """Mask of the `cap` smallest (value, item) entries within each cluster."""
    order = np.lexsort((items, values, clusters))
    sorted_clusters = clusters[order]
    starts = np.flatnonzero(np.r_[True, sorted_clusters[1:] != sorted_clusters[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = np.zeros(len(items), dtype=bool)
    keep[order] = np.arange(len(order)) - first < cap
    return keep


def balanced_assign_reference(dist: np.ndarray, cap: int) -> np.ndarray:
    """Obviously-correct greedy: walk all (item, cluster) pairs by (distance, item, cluster)."""
    n, k = dist.shape
    items, clusters = np.divmod(np.arange(n * k), k)
    assign = np.full(n, -1, dtype=np.int64)
    sizes = np.zeros(k, dtype=np.int64)
    for p in np.lexsort((clusters, items, dist.ravel())):
        i, c = items[p], clusters[p]
        if assign[i] < 0 and sizes[c] < cap:
            assign[i], sizes[c] = c, sizes[c] + 1
    return assign


def sq_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """float64 [n, k] squared Euclidean distances."""
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    return (x ** 2).sum(1)[:, None] - 2.0 * x @ c.T + (c ** 2).sum(1)[None, :]


def balanced_kmeans(x: np.ndarray, k: int, niter: int, seed: int,
                    balance_iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """x float [n, d] (n >= k) -> (centroids float32 [k, d], assign int64 [n]).

    Each cluster holds at most ceil(n / k) items; each centroid is the mean of its items (a cluster
    left empty keeps its k-means centroid)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False,
                      max_points_per_centroid=256, min_points_per_centroid=1)
    km.train(x)
    centroids = np.asarray(km.centroids, dtype=np.float64)
    cap, assign = capacity(x.shape[0], k), None
    for _ in range(max(1, balance_iters)):
        new = balanced_assign(sq_distances(x, centroids), cap)
        centroids = _cluster_means(x, new, centroids)
        # A fixed point: the next assignment would see the same centroids.
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
    return centroids.astype(np.float32), new


def _cluster_means(x: np.ndarray, assign: np.ndarray, previous: np.ndarray) -> np.ndarray:
    from scipy import sparse

    k, n = previous.shape[0], x.shape[0]
    member = sparse.csr_matrix((np.ones(n), (assign, np.arange(n))), shape=(k, n))
    sums = np.asarray(member @ x.astype(np.float64))
    counts = np.bincount(assign, minlength=k)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], previous)


def fit_rq_balanced(x: np.ndarray, levels: int, codebook_size: int, niter: int, seed: int,
                    min_points_per_code: int = 8, balance_iters: int = 10) -> "RQBalancedTokenizer":
    """Fits `levels` balanced codebooks of size K (shrunk for tiny inputs) on x: float32 [n, dim]."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    k = effective_codebook_size(x.shape[0], codebook_size, min_points_per_code)
    residual = x.astype(np.float64)
    books, codes = [], np.zeros((x.shape[0], levels), dtype=np.int64)
    for level in range(levels):
        book, codes[:, level] = balanced_kmeans(residual, k, niter, seed + level, balance_iters)
        # The next level sees the float32 codeword that decode will add back.
        residual -= book[codes[:, level]].astype(np.float64)
        books.append(book)
    return RQBalancedTokenizer(tuple(books), fit_codes=codes)


def _fit_from_config(x: np.ndarray, cfg, seed: int, progress=None) -> "RQBalancedTokenizer":
    return fit_rq_balanced(x, cfg.levels, cfg.codebook_size, cfg.niter, seed, cfg.min_points_per_code)


@register("rq_kmeans_balanced", _fit_from_config)
class RQBalancedTokenizer(ResidualCodebooks):
    """codebooks[l]: float32 [K, dim]. `encode` is nearest-centroid residual descent (as rq_kmeans).

    fit_codes: int64 [n_fit, L], the capacity-respecting assignment of the training rows (None after
    `from_state`). It differs from `encode` on the training rows wherever a full cluster pushed an
    item to its second-best centroid; it is not part of the saved state."""

    def __init__(self, codebooks, fit_codes: np.ndarray | None = None):
        super().__init__(codebooks)
        self.fit_codes = fit_codes
