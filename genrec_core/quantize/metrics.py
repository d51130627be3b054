"""SID quality metrics that need no recommender.

`sid_quality` is the small dict the tokenize stage and the gate read. `sid_report` is the full report
(architecture §1, "SID quality"): collisions and their spread (Gini), per-level usage, entropy and
prefix-conditional entropy, reconstruction, kNN neighbourhood preservation, category purity, churn
against a previous map, and figures after collision resolution. Everything is vectorised numpy; only
the kNN part samples (seeded) query items, because exact search costs O(queries x n x dim): at 10^6
items, 10^4 queries are ~10^10 inner products, minutes on two CPU cores.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np


def collision_rate(codes: np.ndarray) -> float:
    """Share of items that share their full code tuple with an item counted before them."""
    if codes.shape[0] == 0:
        return 0.0
    unique = np.unique(codes, axis=0).shape[0]
    return float((codes.shape[0] - unique) / codes.shape[0])


def items_per_sid(codes: np.ndarray) -> np.ndarray:
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return counts


def level_usage(codes: np.ndarray, level_sizes: tuple[int, ...]) -> list[dict[str, float]]:
    """Per level: share of codes used, entropy in bits, perplexity, number of dead codes."""
    out = []
    for level, k in enumerate(level_sizes):
        counts = np.bincount(codes[:, level], minlength=k).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        entropy = float(-(p * np.log2(p)).sum())
        out.append({"codebook_size": int(k), "used": int((counts > 0).sum()),
                    "usage": float((counts > 0).mean()), "entropy_bits": entropy,
                    "perplexity": float(2 ** entropy), "dead_codes": int((counts == 0).sum())})
    return out


def reconstruction_error(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Mean over items of ||x - x_hat||^2 / ||x||^2."""
    num = ((x - x_hat) ** 2).sum(1)
    den = np.maximum((x ** 2).sum(1), 1e-12)
    return float((num / den).mean())


def sid_quality(semantic_codes: np.ndarray, level_sizes: tuple[int, ...], x: np.ndarray,
                x_hat: np.ndarray) -> dict:
    """Quality of semantic codes [n, L] (before the dedup digit) for vectors x and their decodings."""
    per_sid = items_per_sid(semantic_codes) if len(semantic_codes) else np.zeros(0)
    return {
        "n_items": int(semantic_codes.shape[0]),
        "collision_rate": collision_rate(semantic_codes),
        "max_items_per_sid": int(per_sid.max()) if per_sid.size else 0,
        "mean_items_per_sid": float(per_sid.mean()) if per_sid.size else 0.0,
        "levels": level_usage(semantic_codes, level_sizes),
        "reconstruction_rel_error": reconstruction_error(x, x_hat),
    }


# ---------------------------------------------------------------------------------------------------
# Building blocks of the full report. Each works on dense group ids so that a 10^6-item map costs a
# few sorts, never a Python loop over items.


def prefix_ids(codes: np.ndarray) -> list[np.ndarray]:
    """ids[l]: int64 [n], a dense id of each item's prefix (c_1..c_{l+1}); equal ids <=> equal prefixes.

    The key of depth l is (id at depth l-1) * radix + c_l; ids stay < n, so the key never overflows."""
    n = codes.shape[0]
    ids, key = [], np.zeros(n, dtype=np.int64)
    for level in range(codes.shape[1]):
        column = codes[:, level].astype(np.int64)
        radix = int(column.max()) + 1 if n else 1
        _, key = np.unique(key * radix + column, return_inverse=True)
        key = key.reshape(-1).astype(np.int64)
        ids.append(key)
    return ids


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of the distribution proportional to `counts` (zeros ignored)."""
    counts = np.asarray(counts, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def gini(sizes: np.ndarray) -> float:
    """Gini coefficient of group sizes: sum_i (2i - g - 1) s_(i) / (g * sum s) over sizes sorted
    ascending. 0 when every group is equal; at most (g-1)/g, reached as one group holds nearly all."""
    s = np.sort(np.asarray(sizes, dtype=np.float64))
    g = s.size
    if g == 0 or s.sum() == 0:
        return 0.0
    rank = np.arange(1, g + 1, dtype=np.float64)
    return float(((2 * rank - g - 1) * s).sum() / (g * s.sum()))


def conditional_entropies(ids: Sequence[np.ndarray]) -> list[float]:
    """H(c_l | c_<l) = H(c_1..c_l) - H(c_1..c_{l-1}) in bits, per level (ReSID): how uncertain a level's
    code still is once its prefix is known. Level 1 gets H(c_1)."""
    joint = [entropy_bits(np.bincount(i)) for i in ids]
    return [max(0.0, h - (joint[l - 1] if l else 0.0)) for l, h in enumerate(joint)]


def random_share(group: np.ndarray) -> float:
    """Expected share of an item's neighbours in its own group if groups were assigned at random with
    the same sizes: sum_c p_c (n_c - 1) / (n - 1) = sum_c n_c (n_c - 1) / (n (n - 1))."""
    n = group.size
    if n < 2:
        return 0.0
    counts = np.bincount(group).astype(np.float64)
    return float((counts * (counts - 1)).sum() / (n * (n - 1.0)))


def knn_neighbours(x: np.ndarray, k: int, max_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours (faiss IndexFlatIP on L2-normalised x), excluding the item itself.

    At most `max_queries` query items, drawn without replacement by a seeded generator and sorted, so
    the sample is a deterministic function of (n, max_queries, seed). Returns (queries [m],
    neighbours int64 [m, k])."""
    import faiss

    n = x.shape[0]
    z = np.ascontiguousarray(x, dtype=np.float32)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    queries = np.arange(n)
    if n > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(n, size=max_queries, replace=False))
    index = faiss.IndexFlatIP(z.shape[1])
    index.add(z)
    _, found = index.search(z[queries], k + 1)
    return queries, _drop_self(found, queries, k)


def _drop_self(found: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    # The item itself is usually first, but exact duplicates can push it later or out of the k+1;
    # drop it wherever it is, or else the (k+1)-th hit, so every row keeps exactly k neighbours.
    keep = found != queries[:, None]
    keep[keep.all(axis=1), -1] = False
    return found[keep].reshape(len(queries), k).astype(np.int64)


def neighbour_share(group: np.ndarray, queries: np.ndarray, neighbours: np.ndarray) -> float:
    """Mean over queries of the share of their neighbours that are in the query's group."""
    return float((group[neighbours] == group[queries][:, None]).mean())


def majority_share(group: np.ndarray, labels: np.ndarray) -> float:
    """Category purity: sum over groups of the count of the group's most common label, divided by n;
    i.e. the size-weighted mean over groups of the majority label's share."""
    n_labels = int(labels.max()) + 1
    pairs, counts = np.unique(group.astype(np.int64) * n_labels + labels, return_counts=True)
    best = np.zeros(int(group.max()) + 1, dtype=np.int64)
    np.maximum.at(best, pairs // n_labels, counts)
    return float(best.sum() / group.size)


# ---------------------------------------------------------------------------------------------------
# The typed report.


class _Record:
    """to_dict / from_dict for the frozen report dataclasses: tuples become lists, unknown keys fail."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        hints = typing.get_type_hints(cls)
        return cls(**{name: _restore(hints[name], data[name]) for name in names})


def _jsonable(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _restore(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union:  # Optional[X]
        return _restore(args[0], value)
    if typing.get_origin(tp) is tuple:
        return tuple(_restore(args[0], v) for v in value)
    if isinstance(tp, type) and issubclass(tp, _Record):
        return tp.from_dict(value)
    return value


@dataclass(frozen=True)
class LevelStats(_Record):
    """One code level. usage = used / codebook_size; dead codes are never used; perplexity = 2^entropy
    (the number of equally used codes with the same entropy); conditional_entropy_bits = H(c_l | c_<l)."""

    codebook_size: int
    used: int
    usage: float
    dead_codes: int
    entropy_bits: float
    perplexity: float
    conditional_entropy_bits: float


@dataclass(frozen=True)
class NeighbourStats(_Record):
    """kNN neighbourhood preservation: the share of an item's k nearest embedding neighbours (cosine)
    that share its first-level code, over `knn_sample` seeded query items (all items when n is small),
    against `baseline`, the same share under random codes with the same code sizes. `prefix_share` and
    `prefix_baseline` give the same for the first 1..L codes."""

    k: int
    knn_sample: int
    seed: int
    preservation: float
    baseline: float
    prefix_share: tuple[float, ...]
    prefix_baseline: tuple[float, ...]


@dataclass(frozen=True)
class PurityStats(_Record):
    """Category purity of first-level codes: size-weighted mean over codes of the majority category's
    share. `baseline` is the share of the most common category (the purity of one code for all items);
    `prefix_purity` gives purity of the first 1..L codes."""

    n_categories: int
    purity: float
    baseline: float
    prefix_purity: tuple[float, ...]


@dataclass(frozen=True)
class ChurnStats(_Record):
    """Against the previous map: among items in both maps, the share whose full SID changed, whose
    first code changed and whose first 1..L codes changed; items added and removed since."""

    n_previous: int
    n_common: int
    n_added: int
    n_removed: int
    sid_changed: float
    first_code_changed: float
    prefix_changed: tuple[float, ...]


@dataclass(frozen=True)
class ResolvedStats(_Record):
    """The final (published) codes after collision resolution: collision rate, share of items with a
    SID of their own (unique_share = distinct SIDs / items), largest group, and the number of code levels."""

    n_levels: int
    collision_rate: float
    unique_share: float
    max_items_per_sid: int


@dataclass(frozen=True)
class SIDReport(_Record):
    """Quality of semantic codes [n, L] before collision resolution (see each part's docstring).

    collision_rate: share of items whose SID an earlier item already has (n - distinct SIDs) / n.
    items per SID: max and mean over SIDs that hold at least one item; gini_items_per_sid: their Gini.
    reconstruction_rel_error: mean over items of ||x - x_hat||^2 / ||x||^2 (None without x_hat)."""

    n_items: int
    n_levels: int
    n_sids: int
    collision_rate: float
    max_items_per_sid: int
    mean_items_per_sid: float
    gini_items_per_sid: float
    levels: tuple[LevelStats, ...]
    reconstruction_rel_error: Optional[float] = None
    knn: Optional[NeighbourStats] = None
    purity: Optional[PurityStats] = None
    churn: Optional[ChurnStats] = None
    resolved: Optional[ResolvedStats] = None


# ---------------------------------------------------------------------------------------------------
# Section builders and the one entry point.


def _levels(codes: np.ndarray, level_sizes: Sequence[int], ids: list[np.ndarray]) -> tuple[LevelStats, ...]:
    conditional = conditional_entropies(ids)
    out = []
    for level, k in enumerate(level_sizes):
        counts = np.bincount(codes[:, level], minlength=int(k))
        h = entropy_bits(counts)
        used = int((counts > 0).sum())
        out.append(LevelStats(codebook_size=int(k), used=used, usage=used / int(k), dead_codes=int(k) - used,
                              entropy_bits=h, perplexity=float(2.0 ** h),
                              conditional_entropy_bits=conditional[level]))
    return tuple(out)


def _knn(x: np.ndarray, ids: list[np.ndarray], k: int, max_queries: int, seed: int) -> Optional[NeighbourStats]:
    k = min(k, x.shape[0] - 1)
    if k < 1:
        return None
    queries, neighbours = knn_neighbours(x, k, max_queries, seed)
    share = tuple(neighbour_share(g, queries, neighbours) for g in ids)
    baseline = tuple(random_share(g) for g in ids)
    return NeighbourStats(k=k, knn_sample=int(len(queries)), seed=seed, preservation=share[0],
                          baseline=baseline[0], prefix_share=share, prefix_baseline=baseline)


def _purity(categories: Sequence[str], ids: list[np.ndarray]) -> PurityStats:
    names, labels = np.unique(np.asarray(categories).astype(str), return_inverse=True)
    labels = labels.reshape(-1).astype(np.int64)
    by_depth = tuple(majority_share(g, labels) for g in ids)
    return PurityStats(n_categories=int(names.size), purity=by_depth[0],
                       baseline=float(np.bincount(labels).max() / labels.size), prefix_purity=by_depth)


def churn(item_ids: Sequence[str], codes: np.ndarray, previous_ids: Sequence[str],
          previous_codes: np.ndarray) -> ChurnStats:
    """Compares two maps by item id (ids unique within each map). A different number of code levels
    counts as a changed SID for every common item."""
    cur, prev = _unique_ids(item_ids, "item_ids"), _unique_ids(previous_ids, "previous ids")
    common, ci, pi = np.intersect1d(cur, prev, assume_unique=True, return_indices=True)
    a, b = np.asarray(codes)[ci], np.asarray(previous_codes)[pi]
    depth = min(a.shape[1], b.shape[1])
    changed_prefix = tuple(_share((a[:, :d] != b[:, :d]).any(axis=1)) for d in range(1, depth + 1))
    sid_changed = _share((a != b).any(axis=1)) if a.shape[1] == b.shape[1] else (1.0 if common.size else 0.0)
    return ChurnStats(n_previous=int(prev.size), n_common=int(common.size), n_added=int(cur.size - common.size),
                      n_removed=int(prev.size - common.size), sid_changed=sid_changed,
                      first_code_changed=changed_prefix[0] if changed_prefix else 0.0,
                      prefix_changed=changed_prefix)


def _unique_ids(ids: Sequence[str], what: str) -> np.ndarray:
    out = np.asarray(ids).astype(str)
    ordered = np.sort(out)  # a sort beats np.unique's string hashing by ~3x at 10^6 ids
    if (ordered[1:] == ordered[:-1]).any():
        raise ValueError(f"{what} repeat an item id; a SID map holds one row per item")
    return out


def chunked_reconstruction_error(x: np.ndarray, x_hat: np.ndarray, chunk: int = 65_536) -> float:
    """reconstruction_error in float64 over row blocks, so 10^6 x 768 inputs need no n x d temporaries."""
    total = 0.0
    for start in range(0, x.shape[0], chunk):
        part = slice(start, start + chunk)
        a, b = np.asarray(x[part], dtype=np.float64), np.asarray(x_hat[part], dtype=np.float64)
        total += reconstruction_error(a, b) * a.shape[0]
    return total / x.shape[0]


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


def _resolved(final_codes: np.ndarray) -> ResolvedStats:
    group = prefix_ids(final_codes)[-1]
    sizes = np.bincount(group)
    return ResolvedStats(n_levels=int(final_codes.shape[1]),
                         collision_rate=(group.size - sizes.size) / group.size, unique_share=float(sizes.size / group.size), max_items_per_sid=int(sizes.max()))


def _check_inputs(codes: np.ndarray, level_sizes: Sequence[int], **aligned) -> None:
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise ValueError(f"need non-empty codes [n, L], got shape {codes.shape}")
    if codes.shape[1] != len(level_sizes):
        raise ValueError(f"codes have {codes.shape[1]} levels but level_sizes has {len(level_sizes)}")
    if (codes < 0).any() or (codes >= np.asarray(level_sizes)[None, :]).any():
        raise ValueError("a code lies outside [0, codebook_size) of its level")
    for name, value in aligned.items():
        if value is not None and len(value) != codes.shape[0]:
            raise ValueError(f"{name} has {len(value)} rows, codes have {codes.shape[0]}")


def sid_report(codes: np.ndarray, level_sizes: Sequence[int], x: Optional[np.ndarray],
               x_hat: Optional[np.ndarray] = None, categories: Optional[Sequence[str]] = None,
               previous: Optional[tuple[Sequence[str], np.ndarray]] = None, knn_k: int = 10, seed: int = 0,
               final_codes: Optional[np.ndarray] = None, item_ids: Optional[Sequence[str]] = None,
               knn_max_queries: int = 10_000) -> SIDReport:
    """The full SID quality report.

    codes: int [n, L] semantic codes before collision resolution, level l in [0, level_sizes[l]).
    x: float [n, d] the quantized vectors (None skips kNN); x_hat: [n, d] their decodings (None skips
    reconstruction). categories: [n] str, e.g. the top-level category (None skips purity).
    previous: (item_ids_prev [m], codes_prev [m, L']) of the previous map, compared by `item_ids` [n]
    against the full SIDs (final_codes when given, else codes). final_codes: int [n, L''] after collision
    resolution. kNN uses at most `knn_max_queries` seeded query items (recorded as knn.knn_sample)."""
    codes = np.asarray(codes, dtype=np.int64)
    _check_inputs(codes, level_sizes, x=x, x_hat=x_hat, categories=categories, final_codes=final_codes,
                  item_ids=item_ids)
    if previous is not None and (item_ids is None or len(previous[0]) != len(previous[1])):
        raise ValueError("churn needs item_ids for the current codes and aligned (ids, codes) for the "
                         "previous map")
    ids = prefix_ids(codes)
    sizes = np.bincount(ids[-1])
    full = codes if final_codes is None else np.asarray(final_codes, dtype=np.int64)
    return SIDReport(
        n_items=int(codes.shape[0]), n_levels=int(codes.shape[1]), n_sids=int(sizes.size),
        collision_rate=(codes.shape[0] - sizes.size) / codes.shape[0], max_items_per_sid=int(sizes.max()),
        mean_items_per_sid=float(sizes.mean()), gini_items_per_sid=gini(sizes),
        levels=_levels(codes, level_sizes, ids),
        reconstruction_rel_error=None if x is None or x_hat is None else chunked_reconstruction_error(x, x_hat),
        knn=None if x is None else _knn(np.asarray(x), ids, knn_k, knn_max_queries, seed),
        purity=None if categories is None else _purity(categories, ids),
        churn=None if previous is None else churn(item_ids, full, previous[0], np.asarray(previous[1])),
        resolved=None if final_codes is None else _resolved(full))
