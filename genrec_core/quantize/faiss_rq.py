"""Beam-searched residual quantization with `faiss.ResidualQuantizer`.

Training and encoding both keep the `beam_size` best partial code tuples per level (ranked by the
squared norm of what is left to quantize), so a level may pick a code that is not its nearest one
when that leaves a better residual for the levels below. `encode` is FAISS's C++ beam search;
`encode_reference` is the same beam search in numpy float64, ties broken the same way.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from genrec_core.quantize.base import register
from genrec_core.quantize.rq_kmeans import ResidualCodebooks, effective_codebook_size


def unpack_codes(packed: np.ndarray, levels: int, nbits: int) -> np.ndarray:
    """FAISS bit-packed codes uint8 [n, code_size] -> int64 [n, levels].

    FAISS's BitstringWriter fills each byte from its least significant bit, code after code."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1, bitorder="little")
    bits = bits[:, :levels * nbits].reshape(-1, levels, nbits).astype(np.int64)
    return (bits << np.arange(nbits, dtype=np.int64)).sum(axis=2)


def beam_search_reference(codebooks, x: np.ndarray, beam_size: int, chunk: int = 256) -> np.ndarray:
    """Numpy twin of FAISS's `refine_beam_mp`: int64 [n, L], the best tuple of the final beam."""
    x = np.asarray(x, dtype=np.float64)
    codes = np.zeros((x.shape[0], len(codebooks)), dtype=np.int64)
    for start in range(0, x.shape[0], chunk):
        codes[start:start + chunk] = _beam_chunk(codebooks, x[start:start + chunk], beam_size)
    return codes


def _beam_chunk(codebooks, x: np.ndarray, beam_size: int) -> np.ndarray:
    n = x.shape[0]
    residuals = x[:, None, :]                      # [n, beam, d]
    codes = np.zeros((n, 1, 0), dtype=np.int64)    # [n, beam, levels so far]
    rows = np.arange(n)[:, None]
    for book in codebooks:
        book = np.asarray(book, dtype=np.float64)
        k = book.shape[0]
        beam, dim = residuals.shape[1], residuals.shape[2]
        dot = (residuals.reshape(-1, dim) @ book.T).reshape(n, beam, k)
        dist = (residuals ** 2).sum(-1)[:, :, None] - 2.0 * dot + (book ** 2).sum(1)[None, None, :]
        new_beam = min(beam * k, beam_size)
        # FAISS ranks each beam's candidates with IndexFlatL2, then merges them in a max-heap that
        # only admits strictly smaller values, so equal distances go to the lower parent beam, then
        # the lower code: a stable sort of the flattened [beam * K] candidates. FAISS's distances are
        # float32 (which kernel depends on the batch size), so near-ties may still order differently.
        best = np.argsort(dist.reshape(n, -1), axis=1, kind="stable")[:, :new_beam]
        parent, code = best // k, best % k
        codes = np.concatenate([codes[rows, parent], code[:, :, None]], axis=2)
        residuals = residuals[rows, parent] - book[code]
    return codes[:, 0, :]


def _build_rq(codebooks, beam_size: int):
    """A trained-looking faiss.ResidualQuantizer from stored codebooks (no retraining)."""
    import faiss

    dim, levels = codebooks[0].shape[1], len(codebooks)
    rq = faiss.ResidualQuantizer(dim, levels, _nbits(codebooks[0].shape[0]))
    flat = np.ascontiguousarray(np.concatenate(codebooks).ravel(), dtype=np.float32)
    faiss.copy_array_to_vector(flat, rq.codebooks)
    rq.max_beam_size = beam_size
    rq.is_trained = True
    return rq


def _nbits(k: int) -> int:
    if k < 2 or k & (k - 1):
        raise ValueError(f"faiss_rq needs a power-of-two codebook size, got {k}")
    return k.bit_length() - 1


def _clamp_beam(beam_size: int, k: int, levels: int) -> int:
    # FAISS packs the first tuple of a beam it assumes is max_beam_size wide; a final beam narrower
    # than that (K**levels < beam) would be read at the wrong stride, so never ask for more tuples
    # than exist.
    return int(max(1, min(beam_size, k ** levels)))


def fit_faiss_rq(x: np.ndarray, levels: int, codebook_size: int, niter: int, seed: int,
                 beam_size: int = 8, min_points_per_code: int = 8) -> "FaissRQTokenizer":
    """Trains a ResidualQuantizer (beam `beam_size`) on x: float32 [n, dim]; K shrinks for tiny inputs."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    k = effective_codebook_size(x.shape[0], codebook_size, min_points_per_code)
    beam = _clamp_beam(beam_size, k, levels)
    rq = faiss.ResidualQuantizer(x.shape[1], levels, _nbits(k))
    rq.max_beam_size = beam
    rq.cp.seed = seed
    rq.cp.niter = niter
    # Tiny catalogues get few points per centroid on purpose (see effective_codebook_size).
    rq.cp.min_points_per_centroid = 1
    rq.verbose = False
    rq.train(x)
    flat = faiss.vector_to_array(rq.codebooks).reshape(levels, k, x.shape[1])
    return FaissRQTokenizer(tuple(flat), beam)


def _fit_from_config(x: np.ndarray, cfg, seed: int, progress=None) -> "FaissRQTokenizer":
    return fit_faiss_rq(x, cfg.levels, cfg.codebook_size, cfg.niter, seed, cfg.beam_size,
                        cfg.min_points_per_code)


@register("faiss_rq", _fit_from_config)
class FaissRQTokenizer(ResidualCodebooks):
    """codebooks[l]: float32 [K, dim] (K a power of two); beam_size: tuples kept per level.

    `level_distances` is the plain residual distance given a prefix (what collision strategies
    search); `encode` and `encode_reference` are beam searches, so they can differ from a greedy
    descent over `level_distances`."""

    def __init__(self, codebooks, beam_size: int):
        super().__init__(codebooks)
        if len({c.shape[0] for c in self.codebooks}) != 1:
            raise ValueError("faiss_rq needs one codebook size for every level")
        _nbits(self.codebooks[0].shape[0])
        self.beam_size = _clamp_beam(beam_size, self.codebooks[0].shape[0], len(self.codebooks))
        self._rq = None

    def _faiss(self):
        if self._rq is None:
            self._rq = _build_rq(self.codebooks, self.beam_size)
        return self._rq

    def encode(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[0] == 0:
            return np.zeros((0, self.levels), dtype=np.int64)
        packed = self._faiss().compute_codes(x)
        return unpack_codes(packed, self.levels, _nbits(self.level_sizes[0]))

    def encode_reference(self, x: np.ndarray) -> np.ndarray:
        return beam_search_reference(self.codebooks, self.latent(x), self.beam_size)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, header = super().state()
        return arrays, {**header, "beam_size": self.beam_size}

    @classmethod
    def from_state(cls, arrays, header):
        if header.get("kind") != cls.kind:
            raise ValueError(f"not a {cls.kind} tokenizer: {header.get('kind')!r}")
        books = tuple(np.asarray(arrays[f"codebook_{i}"]) for i in range(header["levels"]))
        return cls(books, int(header["beam_size"]))
