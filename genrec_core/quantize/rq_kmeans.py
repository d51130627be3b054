"""Residual k-means (RQ-KMeans): k-means at level 1, then k-means on the residuals at each level.

`fit_rq_kmeans` trains one `faiss.Kmeans` per level. `RQKMeansTokenizer.encode` assigns with FAISS;
`encode_reference` (numpy, from the base class) is what tests hold the fast path to.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from genrec_core.quantize.base import Tokenizer, register


def effective_codebook_size(n_items: int, codebook_size: int, min_points_per_code: int) -> int:
    """Largest power of two <= codebook_size leaving >= min_points_per_code items per code (at least 2)."""
    cap = max(2, n_items // max(1, min_points_per_code))
    k = 2
    while k * 2 <= min(codebook_size, cap):
        k *= 2
    return min(k, codebook_size) if codebook_size >= 2 else 2


def residual_level_distances(codebooks, z: np.ndarray, prefix: np.ndarray, level: int) -> np.ndarray:
    """Shared by every plain residual quantizer: ||z - sum(prefix codewords) - c_k||^2 for each k."""
    residual = np.asarray(z, dtype=np.float64).copy()
    for above in range(level):
        residual -= codebooks[above][prefix[:, above]].astype(np.float64)
    book = codebooks[level].astype(np.float64)
    return ((residual ** 2).sum(1)[:, None] - 2.0 * residual @ book.T + (book ** 2).sum(1)[None, :])


# Process-wide, because every quantizer's encode path reaches FAISS through flat_l2_index. The caller
# sets the policy (jobs read it from their settings); the core reads no environment.
_GPU: dict = {"allowed": True}


def allow_faiss_gpu(allowed: bool) -> None:
    """False pins FAISS to the CPU on a GPU host (the jobs' GENREC_FAISS_GPU=0)."""
    _GPU["allowed"] = bool(allowed)


def faiss_gpus() -> int:
    """GPUs FAISS can use: 0 with faiss-cpu, or when allow_faiss_gpu(False) pins the CPU path."""
    import faiss

    if not _GPU["allowed"] or not hasattr(faiss, "StandardGpuResources"):
        return 0
    return faiss.get_num_gpus()


def flat_l2_index(book: np.ndarray):
    """Exact L2 index over a codebook, on GPU 0 when faiss-gpu sees one. GPU distances come from a
    float32 GEMM, so codes match the CPU path except on near-ties (tests allow 0.1% of rows)."""
    import faiss

    index = faiss.IndexFlatL2(book.shape[1])
    index.add(np.ascontiguousarray(book, dtype=np.float32))
    if faiss_gpus() > 0:
        if "res" not in _GPU:
            _GPU["res"] = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(_GPU["res"], 0, index)
    return index


def faiss_residual_encode(codebooks, x: np.ndarray) -> np.ndarray:
    """Greedy residual assignment with one exact FAISS search per level."""
    residual = np.ascontiguousarray(x, dtype=np.float32).copy()
    codes = np.empty((residual.shape[0], len(codebooks)), dtype=np.int64)
    for level, book in enumerate(codebooks):
        _, nearest = flat_l2_index(book).search(residual, 1)
        codes[:, level] = nearest[:, 0]
        residual -= book[nearest[:, 0]]
    return codes


class ResidualCodebooks(Tokenizer):
    """Base for quantizers whose state is one codebook per level applied to residuals."""

    def __init__(self, codebooks):
        self.codebooks = tuple(np.ascontiguousarray(c, dtype=np.float32) for c in codebooks)

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return tuple(int(c.shape[0]) for c in self.codebooks)

    @property
    def dim(self) -> int:
        return int(self.codebooks[0].shape[1])

    def level_distances(self, z, prefix, level):
        return residual_level_distances(self.codebooks, z, prefix, level)

    def encode(self, x: np.ndarray) -> np.ndarray:
        return faiss_residual_encode(self.codebooks, x)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        out = np.zeros((codes.shape[0], self.dim), dtype=np.float32)
        for level, book in enumerate(self.codebooks):
            out += book[codes[:, level]]
        return out

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"codebook_{i}": c for i, c in enumerate(self.codebooks)}
        return arrays, {"kind": self.kind, "levels": self.levels, "level_sizes": list(self.level_sizes),
                        "dim": self.dim}

    @classmethod
    def from_state(cls, arrays, header):
        if header.get("kind") != cls.kind:
            raise ValueError(f"not a {cls.kind} tokenizer: {header.get('kind')!r}")
        return cls(tuple(np.asarray(arrays[f"codebook_{i}"]) for i in range(header["levels"])))


def fit_rq_kmeans(x: np.ndarray, levels: int, codebook_size: int, niter: int, seed: int,
                  min_points_per_code: int = 8, init=None) -> "RQKMeansTokenizer":
    """Fits `levels` codebooks of size K (shrunk for tiny inputs) on x: float32 [n, dim]. init:
    codebooks to start each level's k-means from (a level of another shape starts from scratch)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    k = effective_codebook_size(x.shape[0], codebook_size, min_points_per_code)
    residual = x.copy()
    books = []
    for level in range(levels):
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed + level, verbose=False,
                          max_points_per_centroid=256, min_points_per_centroid=1, gpu=faiss_gpus() > 0)
        start = init[level] if init is not None and level < len(init) else None
        if start is not None and tuple(start.shape) == (k, x.shape[1]):
            km.train(residual, init_centroids=np.ascontiguousarray(start, dtype=np.float32))
        else:
            km.train(residual)
        book = np.ascontiguousarray(km.centroids, dtype=np.float32)
        _, nearest = km.index.search(residual, 1)
        residual -= book[nearest[:, 0]]
        books.append(book)
    return RQKMeansTokenizer(tuple(books))


def _fit_from_config(x: np.ndarray, cfg, seed: int, progress=None, warm_start=None) -> "RQKMeansTokenizer":
    return fit_rq_kmeans(x, cfg.levels, cfg.codebook_size, cfg.niter, seed, cfg.min_points_per_code,
                         init=warm_start.codebooks if warm_start is not None else None)


@register("rq_kmeans", _fit_from_config)
class RQKMeansTokenizer(ResidualCodebooks):
    """codebooks[l]: float32 [K_l, dim]; one faiss.Kmeans per level on the residuals."""
