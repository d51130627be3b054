"""Pure parts of the collaborative (ALS) embedder: row normalisation and the cold-item rule.

ALS only learns factors for items that occur in interactions. Every catalogue item still needs a
vector, and a zero vector is the worst choice for quantization: it has no direction, so it lands on
whatever code is nearest the origin and drags residual k-means with it. The rule here instead gives
a cold item the mean direction of the warm items that share the deepest part of its category path
("Top > Sub > Leaf", then "Top > Sub", then "Top"), and the mean of all warm items when none share
even the top category. Nothing random is involved, so the rule is deterministic.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

# Vectors shorter than this have no usable direction (e.g. ALS factors that cancelled to ~0).
EPS = 1e-8


def als_blocks(n_pairs: int, pairs_per_block: int = 1_000_000, most: int = 100) -> int:
    """How many user and item blocks ALS uses for n_pairs (user, item) pairs.

    A function of the data alone, never of the cluster: ALS draws its seeded initial factors per
    block, so a block count that followed the core count would change the vectors with the cluster.
    Small data gets few blocks, which also spares local runs ALS's default of 10 tiny-task shuffles."""
    return int(min(most, max(1, -(-n_pairs // pairs_per_block))))


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """[n, d] -> float32 [n, d] with unit rows; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, EPS)).astype(np.float32)


def category_prefixes(path: Optional[str]) -> list[str]:
    """'A > B > C' -> ['A > B > C', 'A > B', 'A'], deepest first; missing paths have none."""
    levels = [p.strip() for p in (path or "").split(">") if p.strip()]
    return [" > ".join(levels[:k]) for k in range(len(levels), 0, -1)]


def _prefix_sums(unit: np.ndarray, warm: np.ndarray, categories: Sequence[Optional[str]]):
    # Summed in item order with float64, so the means do not depend on dict or hash order.
    sums: dict[str, np.ndarray] = {}
    for i in np.flatnonzero(warm):
        for prefix in category_prefixes(categories[i]):
            sums[prefix] = sums.get(prefix, 0.0) + unit[i].astype(np.float64)
    return sums


def _direction(v) -> Optional[np.ndarray]:
    norm = float(np.linalg.norm(v)) if v is not None else 0.0
    return None if norm < EPS else (v / norm).astype(np.float32)


def fill_cold(vectors: np.ndarray, warm: np.ndarray, categories: Sequence[Optional[str]]) -> np.ndarray:
    """Unit vectors for every item: warm rows normalised, cold rows by the category-mean rule.

    vectors: [n, d] (cold rows are ignored); warm: bool [n]; categories: n category paths.
    Warm rows with no direction (norm < EPS) are treated as cold. Raises if no item is warm.
    """
    unit = normalize_rows(vectors)
    warm = np.asarray(warm, dtype=bool) & (np.linalg.norm(unit, axis=1) > 0.5)
    if not warm.any():
        raise ValueError("no item has a collaborative vector; cannot place the cold items")
    sums = _prefix_sums(unit, warm, categories)
    overall = _direction(unit[warm].astype(np.float64).sum(axis=0))
    if overall is None and not warm.all():
        raise ValueError("the warm vectors cancel out; there is no mean direction for cold items")
    out = unit.copy()
    for i in np.flatnonzero(~warm):
        candidates = (_direction(sums.get(p)) for p in category_prefixes(categories[i]))
        found = next((v for v in candidates if v is not None), None)
        out[i] = found if found is not None else overall
    return out
