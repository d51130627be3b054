"""Fused item vectors: text and collaborative parts side by side.

Each part is L2-normalised first, so the weights alone decide how much each part counts in the
distances the quantizer sees (a 384-d text vector and a 64-d ALS vector would otherwise weigh in by
their raw norms). The concatenation is normalised again, like every vector in item_embeddings.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from genrec_core.embed.collab import normalize_rows


def fuse(text: np.ndarray, collab: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """text [n, dt], collab [n, dc], weights (w_text, w_collab) -> float32 [n, dt + dc], unit rows.

    After fusing, the text block of each row has norm w_text / sqrt(w_text² + w_collab²), and the
    collaborative block the matching share.
    """
    w_text, w_collab = (float(w) for w in weights)
    if len(text) != len(collab):
        raise ValueError(f"text has {len(text)} rows but collab has {len(collab)}")
    if min(w_text, w_collab) < 0 or w_text + w_collab == 0:
        raise ValueError(f"fused weights must be non-negative and not both zero, got {tuple(weights)}")
    both = np.concatenate([w_text * normalize_rows(text), w_collab * normalize_rows(collab)], axis=1)
    return normalize_rows(both)
