"""Pure parts of a SID map that lives night after night: placing new items under SIDs already taken,
aligning a refit's code labels to the published map, and measuring churn.

Nothing here reads a table: the tokenize stage hands in the published map as arrays. Codes are int64
[n, L] semantic codes, plus the dedup digit as a last column where the strategy is dedup_digit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrec_core.quantize.collisions import resolve_overflow


@dataclass(frozen=True)
class Placement:
    """codes: int64 [m, width] for the new items, in their input order. overflow: rows that found no
    free SID (dedup_digit: the digit would outgrow `dedup_size`; others: no free candidate)."""

    codes: np.ndarray
    overflow: np.ndarray


def next_free_digit(semantic: np.ndarray, order_key: np.ndarray, taken: np.ndarray,
                    dedup_size: int) -> Placement:
    """dedup_digit under taken SIDs: each new item (in order_key order) gets the smallest digit that
    no taken SID and no earlier new item holds under its semantic code. taken: int [t, L+1]."""
    semantic = np.asarray(semantic, dtype=np.int64).reshape(len(order_key), -1)
    levels = semantic.shape[1]
    held: dict[tuple, set[int]] = {}
    for row in np.asarray(taken, dtype=np.int64).reshape(-1, levels + 1).tolist():
        held.setdefault(tuple(row[:levels]), set()).add(row[levels])
    digits = np.zeros(len(semantic), dtype=np.int64)
    for i in np.argsort(np.asarray(order_key), kind="stable").tolist():
        used = held.setdefault(tuple(semantic[i].tolist()), set())
        d = 0
        while d in used:
            d += 1
        used.add(d)
        digits[i] = d
    codes = np.concatenate([semantic, digits[:, None]], axis=1)
    return Placement(codes, np.flatnonzero(digits >= dedup_size))


def place_new_items(strategy: str, tok, x: np.ndarray, order_key: np.ndarray, taken: np.ndarray, cfg,
                    dedup_size: int | None = None) -> Placement:
    """New items' SIDs under the published tokenizer; a taken SID is never handed out, so no existing
    item moves. x: float32 [m, dim]; taken: the SIDs held by active and reserved items."""
    semantic = tok.encode(x) if len(x) else np.zeros((0, tok.levels), dtype=np.int64)
    if strategy == "dedup_digit":
        return next_free_digit(semantic, order_key, taken, dedup_size if dedup_size is not None else 1 << 62)
    res = resolve_overflow(strategy, tok, tok.latent(x), semantic, order_key, taken, cfg)
    return Placement(res.codes, res.unplaced)


def align_labels(old: np.ndarray, new: np.ndarray, size: int) -> np.ndarray:
    """A permutation `relabel` [size] of one level's new codes that maximises how many items keep
    their old code (Hungarian on the overlap counts); old, new: int [n] for the same items."""
    from scipy.optimize import linear_sum_assignment

    overlap = np.zeros((size, size), dtype=np.int64)
    np.add.at(overlap, (np.asarray(new, dtype=np.int64), np.asarray(old, dtype=np.int64)), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    relabel = np.empty(size, dtype=np.int64)
    relabel[rows] = cols
    return relabel


def churn(old: np.ndarray, new: np.ndarray, semantic_levels: int) -> dict:
    """Shares of items (rows of old and new, the same items) whose full SID, semantic prefix
    (the first `semantic_levels` codes) and first code changed."""
    old, new = np.asarray(old, dtype=np.int64), np.asarray(new, dtype=np.int64)
    n = len(old)
    if n == 0:
        return {"churn_full": 0.0, "churn_prefix": 0.0, "churn_first": 0.0, "compared": 0}
    width = min(old.shape[1], new.shape[1])
    full = (old.shape[1] != new.shape[1]) | (old[:, :width] != new[:, :width]).any(1)
    return {"churn_full": float(full.mean()),
            "churn_prefix": float((old[:, :semantic_levels] != new[:, :semantic_levels]).any(1).mean()),
            "churn_first": float((old[:, 0] != new[:, 0]).mean()), "compared": int(n)}
