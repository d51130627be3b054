"""Residual k-means (RQ-KMeans): k-means at level 1, then k-means on the residuals at each level.

`fit_rq_kmeans` trains one `faiss.Kmeans` per level. `RQKMeansTokenizer.encode` assigns with FAISS;
`encode_reference` is the obviously-correct numpy version that tests hold the fast path to.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np


def effective_codebook_size(n_items: int, codebook_size: int, min_points_per_code: int) -> int:
    """Largest power of two <= codebook_size leaving >= min_points_per_code items per code (at least 2)."""
    cap = max(2, n_items // max(1, min_points_per_code))
    k = 2
    while k * 2 <= min(codebook_size, cap):
        k *= 2
    return min(k, codebook_size) if codebook_size >= 2 else 2


@dataclass(frozen=True)
class RQKMeansTokenizer:
    """codebooks[l]: float32 [K_l, dim]. Codes are int64 [n, L]."""

    codebooks: tuple[np.ndarray, ...]

    @property
    def levels(self) -> int:
        return len(self.codebooks)

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return tuple(int(c.shape[0]) for c in self.codebooks)

    @property
    def dim(self) -> int:
        return int(self.codebooks[0].shape[1])

    def encode(self, x: np.ndarray) -> np.ndarray:
        import faiss

        residual = np.ascontiguousarray(x, dtype=np.float32).copy()
        codes = np.empty((residual.shape[0], self.levels), dtype=np.int64)
        for level, book in enumerate(self.codebooks):
            index = faiss.IndexFlatL2(self.dim)
            index.add(book)
            _, nearest = index.search(residual, 1)
            codes[:, level] = nearest[:, 0]
            residual -= book[nearest[:, 0]]
        return codes

    def encode_reference(self, x: np.ndarray) -> np.ndarray:
        residual = np.asarray(x, dtype=np.float64).copy()
        codes = np.empty((residual.shape[0], self.levels), dtype=np.int64)
        for level, book in enumerate(self.codebooks):
            book64 = book.astype(np.float64)
            for start in range(0, residual.shape[0], 256):  # chunks bound the [rows, K, dim] temporary
                part = residual[start:start + 256]
                codes[start:start + 256, level] = ((part[:, None, :] - book64[None]) ** 2).sum(-1).argmin(1)
            residual -= book64[codes[:, level]]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        out = np.zeros((codes.shape[0], self.dim), dtype=np.float32)
        for level, book in enumerate(self.codebooks):
            out += book[codes[:, level]]
        return out

    def state(self) -> tuple[dict[str, np.ndarray], str]:
        """Arrays for an .npz file and a JSON header; no pickle involved."""
        arrays = {f"codebook_{i}": c for i, c in enumerate(self.codebooks)}
        header = json.dumps({"kind": "rq_kmeans", "levels": self.levels, "level_sizes": self.level_sizes,
                             "dim": self.dim})
        return arrays, header

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], header: str) -> "RQKMeansTokenizer":
        meta = json.loads(header)
        if meta.get("kind") != "rq_kmeans":
            raise ValueError(f"not an rq_kmeans tokenizer: {meta.get('kind')!r}")
        books = tuple(np.asarray(arrays[f"codebook_{i}"], dtype=np.float32) for i in range(meta["levels"]))
        return cls(books)


def fit_rq_kmeans(x: np.ndarray, levels: int, codebook_size: int, niter: int, seed: int,
                  min_points_per_code: int = 8) -> RQKMeansTokenizer:
    """Fits `levels` codebooks of size K (shrunk for tiny inputs) on x: float32 [n, dim]."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    k = effective_codebook_size(x.shape[0], codebook_size, min_points_per_code)
    residual = x.copy()
    books = []
    for level in range(levels):
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed + level, verbose=False,
                          max_points_per_centroid=256, min_points_per_centroid=1)
        km.train(residual)
        book = np.ascontiguousarray(km.centroids, dtype=np.float32)
        _, nearest = km.index.search(residual, 1)
        residual -= book[nearest[:, 0]]
        books.append(book)
    return RQKMeansTokenizer(tuple(books))
