"""SID quality metrics that need no recommender: collisions, code usage, entropy, reconstruction."""
from __future__ import annotations

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
