"""GAOQ, ReSID's Globally Aligned Orthogonal Quantization (arXiv 2602.02338).

A tree of balanced k-means: level 1 splits all items, level l+1 splits each level-l cluster (a
"parent") on its own. A child's codeword is its centroid minus its parent's centroid, so decoding a
code tuple sums codewords onto the global mean, as in residual quantization. What GAOQ adds is the
labelling: each level has one shared set of K near-orthogonal anchor directions, and every parent's
children are matched to anchors by the Hungarian algorithm (most total cosine), so code j points
roughly the same way under every prefix. That lowers H(c_l | c_<l) for a generative recommender.

Splitting rules for a parent with m items and r levels still to cut (r = 1 at the last level):
- the root splits into K clusters (balanced k-means, at most ceil(n / K) items each), as RQ does;
- below the root, a parent gets c = min(K, m, ceil(m ** (1 / r))) children of at most ceil(m / c)
  items, so the remaining levels share the split instead of the first spending it all (splitting
  m <= K items into m singletons at level 2 would leave level 3 a constant code);
- c == m makes every item its own child; m == 1 above the last level gives the zero codeword, code 0.
So the fit-time codes are unique whenever n <= K**L.

The last level offers all K codes under every parent: codes its items did not take are fillers,
codeword = scale * anchor_j, with scale the RMS norm of that parent's real children (or of the level's
when they are all zero). Encoding a new item, or moving one off a taken SID, therefore has K leaves
to choose from under any prefix rather than about one per training item. Fillers are not stored as
rows; they are a per-parent scale and the shared anchors.

State per level: the existing children only, as sorted int64 keys (the code prefix read as a base-K
number, parent key * K + code) with a float32 [children, dim] codeword table, plus for the last
level the sorted parent keys and their filler scales. Decoding and `level_distances` are
`np.searchsorted` lookups plus gathers; a dense [parents, K, dim] table would need
parents * K * dim floats (4.7 GB for 12k level-3 parents, K=256, dim=384).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from genrec_core.quantize.base import Tokenizer, register
from genrec_core.quantize.rq_balanced import balanced_kmeans
from genrec_core.quantize.rq_kmeans import effective_codebook_size


def make_anchors(dim: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [k, dim] unit anchors: orthonormal when k <= dim. For k > dim, stacked orthonormal
    bases of independent random rotations: orthogonal within a block of `dim` anchors, only near-
    orthogonal (|cos| ~ 1/sqrt(dim)) across blocks, since R^dim has no more orthogonal directions."""
    blocks, left = [], k
    while left > 0:
        m = min(dim, left)
        q, _ = np.linalg.qr(rng.normal(size=(dim, m)))
        blocks.append(q.T)
        left -= m
    return np.concatenate(blocks).astype(np.float32)


def match_to_anchors(vectors: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Distinct anchor index per row of vectors [c, dim] (c <= K) maximising total cosine."""
    from scipy.optimize import linear_sum_assignment

    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    # A zero vector has no direction: its cost row is all zeros, so it takes whatever is left.
    unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    rows, cols = linear_sum_assignment(-(unit @ np.asarray(anchors, dtype=np.float64).T))
    codes = np.empty(v.shape[0], dtype=np.int64)
    codes[rows] = cols
    return codes


def prefix_keys(codes: np.ndarray, upto: int, k: int) -> np.ndarray:
    """int64 [n]: codes[:, :upto] read as a base-k number (0 for the empty prefix)."""
    key = np.zeros(codes.shape[0], dtype=np.int64)
    for level in range(upto):
        key = key * k + codes[:, level]
    return key


def child_count(m: int, k: int, levels_left: int, root: bool) -> int:
    """How many children a parent of m items gets (see the module docstring)."""
    if root or levels_left <= 1:
        return min(k, m)
    c = max(1, int(round(m ** (1.0 / levels_left))))
    while c ** levels_left < m:  # smallest c with c**r >= m, without float edge cases
        c += 1
    while c > 1 and (c - 1) ** levels_left >= m:
        c -= 1
    return min(k, m, c)


def _children(residual: np.ndarray, c: int, niter: int, seed: int,
              balance_iters: int) -> tuple[np.ndarray, np.ndarray]:
    """One parent's items [m, dim] (relative to the parent centroid), split into c children ->
    (child vectors [c', dim], child index per item [m])."""
    m = residual.shape[0]
    if c == 1:
        return np.zeros((1, residual.shape[1])), np.zeros(m, dtype=np.int64)
    if c >= m:
        return residual, np.arange(m)
    centroids, assign = balanced_kmeans(residual, c, niter, seed, balance_iters)
    used, child = np.unique(assign, return_inverse=True)
    return centroids[used].astype(np.float64), child.reshape(-1)


def _split_level(residual, parent_key, anchors, k, levels_left, root, niter, seed, balance_iters):
    """Splits every parent of one level -> (code per item [n], sorted child keys, codewords)."""
    order = np.argsort(parent_key, kind="stable")
    parents, starts = np.unique(parent_key[order], return_index=True)
    ends = np.r_[starts[1:], len(order)]
    item_code = np.zeros(len(order), dtype=np.int64)
    keys, words = [], []
    for parent, start, end in zip(parents, starts, ends):
        members = order[start:end]
        c = child_count(len(members), k, levels_left, root)
        vectors, child = _children(residual[members], c, niter, seed, balance_iters)
        child_code = (np.zeros(1, dtype=np.int64) if len(members) == 1
                      else match_to_anchors(vectors, anchors))
        item_code[members] = child_code[child]
        keys.append(parent * k + child_code)
        words.append(vectors)
    keys, words = np.concatenate(keys), np.concatenate(words).astype(np.float32)
    sort = np.argsort(keys)
    return item_code, keys[sort], words[sort]


def filler_scales(keys: np.ndarray, words: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted parent keys, float32 scale per parent): the RMS norm of each parent's children, or the
    level's RMS child norm where a parent's children are all zero (a single item)."""
    parents, inverse = np.unique(keys // k, return_inverse=True)
    sq = (words.astype(np.float64) ** 2).sum(1)
    counts = np.bincount(inverse, minlength=len(parents))
    rms = np.sqrt(np.bincount(inverse, weights=sq, minlength=len(parents)) / counts)
    fallback = np.sqrt(sq[sq > 0].mean()) if (sq > 0).any() else 0.0
    return parents.astype(np.int64), np.where(rms > 0, rms, fallback).astype(np.float32)


def fit_gaoq(x: np.ndarray, levels: int, codebook_size: int, niter: int, seed: int,
             min_points_per_code: int = 8, balance_iters: int = 10) -> "GAOQTokenizer":
    """Fits the aligned tree on x: float32 [n, dim]; K shrinks for tiny inputs as in rq_kmeans."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    k = effective_codebook_size(x.shape[0], codebook_size, min_points_per_code)
    if levels * np.log2(k) > 62:
        raise ValueError(f"{levels} levels of {k} codes do not fit the int64 prefix keys")
    root = x.astype(np.float64).mean(0).astype(np.float32)
    residual = x.astype(np.float64) - root
    parent_key = np.zeros(x.shape[0], dtype=np.int64)
    codes = np.zeros((x.shape[0], levels), dtype=np.int64)
    tables = []
    for level in range(levels):
        anchors = make_anchors(x.shape[1], k, np.random.default_rng([seed, level]))
        codes[:, level], keys, words = _split_level(residual, parent_key, anchors, k, levels - level,
                                                    level == 0, niter, seed + level, balance_iters)
        parent_key = parent_key * k + codes[:, level]
        # Subtract the float32 codeword that decode adds back, so fit residuals match decode.
        residual -= words[np.searchsorted(keys, parent_key)].astype(np.float64)
        tables.append((keys, words, anchors))
    return GAOQTokenizer(root, tables, k, filler_scales(tables[-1][0], tables[-1][1], k),
                         fit_codes=codes)


def _fit_from_config(x: np.ndarray, cfg, seed: int, progress=None) -> "GAOQTokenizer":
    return fit_gaoq(x, cfg.levels, cfg.codebook_size, cfg.niter, seed, cfg.min_points_per_code)


@register("gaoq", _fit_from_config)
class GAOQTokenizer(Tokenizer):
    """root: float32 [dim] global mean; per level l: keys[l] int64 [C_l] sorted child keys
    (prefix through level l in base K), words[l] float32 [C_l, dim] codewords (child centroid minus
    parent centroid), anchors[l] float32 [K, dim]; fillers: (int64 [P] sorted last-level parent
    keys, float32 [P] scales), which make every code valid at the last level under a known parent.

    fit_codes: int64 [n_fit, L], the tree's own assignment of the training rows (None after
    `from_state`; not saved). `encode` descends to the nearest child at each level instead, so on
    training rows it differs from fit_codes wherever a full balanced cluster pushed an item away
    from its nearest centroid (and under a duplicate vector, which fit numbers apart). fit_codes
    are unique when n_fit <= K**L; encode's codes need a collision strategy."""

    def __init__(self, root, tables, codebook_size: int, fillers, fit_codes: np.ndarray | None = None):
        self.root = np.ascontiguousarray(root, dtype=np.float32)
        self.keys = tuple(np.ascontiguousarray(t[0], dtype=np.int64) for t in tables)
        self.words = tuple(np.ascontiguousarray(t[1], dtype=np.float32) for t in tables)
        self.anchors = tuple(np.ascontiguousarray(t[2], dtype=np.float32) for t in tables)
        self.filler_parents = np.ascontiguousarray(fillers[0], dtype=np.int64)
        self.filler_scales = np.ascontiguousarray(fillers[1], dtype=np.float32)
        self.k = int(codebook_size)
        self.fit_codes = fit_codes

    @property
    def level_sizes(self) -> tuple[int, ...]:
        return (self.k,) * len(self.keys)

    @property
    def dim(self) -> int:
        return int(self.root.shape[0])

    @staticmethod
    def _find(table: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `keys` (any shape) in a sorted key table, and whether each is there."""
        rows = np.minimum(np.searchsorted(table, keys), len(table) - 1)
        return rows, table[rows] == keys

    def _codewords(self, level: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float64 [..., dim] codewords of child keys (any shape) and whether each is a valid code:
        a stored child, or at the last level a filler under a known parent."""
        rows, found = self._find(self.keys[level], keys)
        words = self.words[level][rows].astype(np.float64)
        if level < self.levels - 1:
            return words, found
        prow, pfound = self._find(self.filler_parents, keys // self.k)
        filler = self.filler_scales[prow].astype(np.float64)[..., None] * self.anchors[level][keys % self.k]
        fill = pfound & ~found
        return np.where(fill[..., None], filler, words), found | fill

    def _residual(self, z: np.ndarray, prefix: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """z minus the centroid of its prefix (float64 [n, dim]), and whether that prefix exists."""
        residual = np.asarray(z, dtype=np.float64) - self.root
        # An out-of-range code would alias another prefix's key (c*K + K == (c+1)*K + 0).
        ok = ((prefix[:, :level] >= 0) & (prefix[:, :level] < self.k)).all(1)
        for above in range(level):
            words, found = self._codewords(above, prefix_keys(prefix, above + 1, self.k))
            residual -= words
            ok &= found
        return residual, ok

    def level_distances(self, z, prefix, level):
        prefix = np.asarray(prefix, dtype=np.int64)
        residual, ok = self._residual(z, prefix, level)
        # Key -1 has no children (keys are >= 0), so an unknown prefix gets a row of +inf.
        parent_key = np.where(ok, prefix_keys(prefix, level, self.k), -1)
        return self._child_distances(level, residual, parent_key)

    def _child_distances(self, level: int, residual: np.ndarray, parent_key: np.ndarray) -> np.ndarray:
        """float64 [n, K]: squared distance of each residual to every child of its parent, +inf for
        codes its parent does not use. One matmul per parent with several children; the parents with
        a single child (every leaf of a split into single items) share one vectorised gather. At the
        last level, fillers first: |r - s a|^2 = |r|^2 - 2 s r.a + s^2 |a|^2 for all K anchors in
        one matmul, then the stored children overwrite their codes."""
        table, words = self.keys[level], self.words[level]
        out = np.full((residual.shape[0], self.k), np.inf)
        if level == self.levels - 1:
            prow, pfound = self._find(self.filler_parents, parent_key)
            s = self.filler_scales[prow].astype(np.float64)[pfound, None]
            a = self.anchors[level].astype(np.float64)
            r = residual[pfound]
            out[pfound] = ((r ** 2).sum(1)[:, None] - 2.0 * s * (r @ a.T)
                           + s ** 2 * (a ** 2).sum(1)[None, :])
        order = np.argsort(parent_key, kind="stable")
        parents, starts = np.unique(parent_key[order], return_index=True)
        sizes = np.diff(np.r_[starts, len(order)])
        # A parent's children are contiguous in the sorted table: keys parent*K .. parent*K + K-1.
        lo = np.searchsorted(table, parents * self.k)
        hi = np.searchsorted(table, parents * self.k + self.k)
        single, several = hi - lo == 1, hi - lo > 1
        items, rows = order[np.repeat(single, sizes)], np.repeat(lo[single], sizes[single])
        out[items, table[rows] % self.k] = ((residual[items] - words[rows]) ** 2).sum(1)
        for s, n, a, b in zip(starts[several], sizes[several], lo[several], hi[several]):
            members, block = order[s:s + n], words[a:b].astype(np.float64)
            r = residual[members]
            dist = (r ** 2).sum(1)[:, None] - 2.0 * r @ block.T + (block ** 2).sum(1)[None, :]
            out[np.ix_(members, table[a:b] % self.k)] = dist
        return out

    def _gathered_distances(self, z: np.ndarray, prefix: np.ndarray, level: int) -> np.ndarray:
        """Slow twin of `level_distances`: gathers all K candidate codewords per row and takes the
        squared norm of the difference directly."""
        prefix = np.asarray(prefix, dtype=np.int64)
        residual, ok = self._residual(z, prefix, level)
        candidates = prefix_keys(prefix, level, self.k)[:, None] * self.k + np.arange(self.k)
        out = np.full(candidates.shape, np.inf)
        # Gather [chunk, K, dim] codewords at a time, about 32 MB.
        chunk = max(1, 2 ** 22 // (self.k * self.dim))
        for s in range(0, residual.shape[0], chunk):
            words, valid = self._codewords(level, candidates[s:s + chunk])
            valid &= ok[s:s + chunk, None]
            diff = residual[s:s + chunk, None, :] - words
            out[s:s + chunk] = np.where(valid, (diff ** 2).sum(-1), np.inf)
        return out

    def encode(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(self.latent(x), dtype=np.float64)
        codes = np.zeros((z.shape[0], self.levels), dtype=np.int64)
        # Blocks bound the [rows, K] distance matrix (8192 x 256 float64 = 16 MB).
        for start in range(0, z.shape[0], 8192):
            codes[start:start + 8192] = self._encode_block(z[start:start + 8192])
        return codes

    def _encode_block(self, z: np.ndarray) -> np.ndarray:
        residual = z - self.root
        codes = np.zeros((z.shape[0], self.levels), dtype=np.int64)
        parent_key = np.zeros(z.shape[0], dtype=np.int64)
        for level in range(self.levels):
            codes[:, level] = self._child_distances(level, residual, parent_key).argmin(1)
            parent_key = parent_key * self.k + codes[:, level]
            if level < self.levels - 1:
                residual -= self.words[level][self._find(self.keys[level], parent_key)[0]]
        return codes

    def encode_reference(self, x: np.ndarray) -> np.ndarray:
        """Greedy descent over `_gathered_distances`, recomputing each prefix from scratch."""
        return self.greedy_descent(x, self._gathered_distances)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes [n, l] (l <= L; extra columns are ignored) -> centroid of that prefix [n, dim]."""
        codes = np.asarray(codes, dtype=np.int64)[:, :self.levels]
        if ((codes < 0) | (codes >= self.k)).any():
            raise ValueError(f"codes must lie in [0, {self.k})")
        out = np.repeat(self.root[None, :].astype(np.float64), codes.shape[0], axis=0)
        for level in range(codes.shape[1]):
            words, found = self._codewords(level, prefix_keys(codes, level + 1, self.k))
            if not found.all():
                raise ValueError(f"{int((~found).sum())} code tuples use a level-{level} code that "
                                 "does not exist under their prefix")
            out += words
        return out.astype(np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"root": self.root, "filler_parents": self.filler_parents,
                  "filler_scales": self.filler_scales}
        for level in range(self.levels):
            arrays.update({f"keys_{level}": self.keys[level], f"words_{level}": self.words[level],
                           f"anchors_{level}": self.anchors[level]})
        return arrays, {"kind": self.kind, "levels": self.levels, "level_sizes": list(self.level_sizes),
                        "dim": self.dim, "codebook_size": self.k}

    @classmethod
    def from_state(cls, arrays, header):
        if header.get("kind") != cls.kind:
            raise ValueError(f"not a {cls.kind} tokenizer: {header.get('kind')!r}")
        tables = [(arrays[f"keys_{l}"], arrays[f"words_{l}"], arrays[f"anchors_{l}"])
                  for l in range(header["levels"])]
        return cls(arrays["root"], tables, header["codebook_size"],
                   (arrays["filler_parents"], arrays["filler_scales"]))
