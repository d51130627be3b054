"""Test vectors shared by the quantizer tests: unit-norm points around a few Gaussian centres."""
from __future__ import annotations

import numpy as np


def clustered(n: int, dim: int, seed: int, centres: int = 8, noise_seed=None) -> np.ndarray:
    """Centres are fixed by `seed`; `noise_seed` draws new items from the same distribution."""
    means = np.random.default_rng(seed).normal(size=(centres, dim))
    rng = np.random.default_rng(seed) if noise_seed is None else np.random.default_rng(noise_seed + 1000)
    if noise_seed is None:
        rng.normal(size=(centres, dim))  # keep the stream where the centres left it
    x = means[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
