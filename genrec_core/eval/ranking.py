"""Leave-one-out ranking metrics: one held-out target item per user.

`ranked` rows are item indices best first; -1 marks an empty slot (fewer than k items came back)
and never matches a target, since targets are valid item indices (>= 0).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def _hit_ranks(ranked: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """int64[n]: 0-based rank of each user's target within its top k, or -1 if it is not there.

    ranked: int[n, >=k]; targets: int[n].
    """
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    if ranked.ndim != 2 or targets.ndim != 1 or len(ranked) != len(targets):
        raise ValueError(f"need ranked [n, m] and targets [n], got {ranked.shape} and {targets.shape}")
    if k < 1 or ranked.shape[1] < k:
        raise ValueError(f"k={k} must be in 1..{ranked.shape[1]} (columns of ranked)")
    if (targets < 0).any():
        raise ValueError("targets must be valid item indices (>= 0)")
    hits = ranked[:, :k] == targets[:, None]
    # argmax finds the first hit, so a row that (wrongly) repeats its target counts once, at its best rank.
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1).astype(np.int64)


def recall_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Share of users whose target is in their top k (hit rate; one target per user). 0.0 for n = 0."""
    ranks = _hit_ranks(ranked, targets, k)
    return float((ranks >= 0).mean()) if len(ranks) else 0.0


def ndcg_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Mean over users of 1/log2(rank+2) for a hit at 0-based rank < k, else 0. 0.0 for n = 0."""
    ranks = _hit_ranks(ranked, targets, k)
    if not len(ranks):
        return 0.0
    gains = np.where(ranks >= 0, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    return float(gains.mean())


def ranking_report(ranked: np.ndarray, targets: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """{"recall@k": ..., "ndcg@k": ...} for every k in `ks`."""
    report: dict[str, float] = {}
    for k in ks:
        report[f"recall@{k}"] = recall_at_k(ranked, targets, k)
        report[f"ndcg@{k}"] = ndcg_at_k(ranked, targets, k)
    return report


def _reference_metrics(ranked: np.ndarray, targets: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """Plain-loop version of `ranking_report`, kept obviously correct for tests."""
    ranked_rows = np.asarray(ranked).tolist()
    target_list = np.asarray(targets).tolist()
    report: dict[str, float] = {}
    for k in ks:
        hits, gain = 0.0, 0.0
        for row, target in zip(ranked_rows, target_list):
            for rank in range(k):
                if row[rank] == target:
                    hits += 1.0
                    gain += 1.0 / math.log2(rank + 2)
                    break
        n = max(len(target_list), 1)
        report[f"recall@{k}"] = hits / n
        report[f"ndcg@{k}"] = gain / n
    return report


EXCLUDED = ".excl"  # suffix of a metric whose ranking left the user's history items out


def evaluate(recommender, histories: list[np.ndarray], targets: np.ndarray, ks: Iterable[int], *,
             num_beams: int, batch_size: int, device: str, progress=None) -> dict[str, float]:
    """Full-catalogue metrics of `recommender` (genrec_core.model.recommenders) in both settings:
    "recall@k" keeps the user's history items in the ranking (as TIGER's beam search does),
    "recall@k.excl" ranks them out (as RecBole does); plus the share of beams that decoded to no item."""
    ks = tuple(ks)
    ranking = recommender.rank(histories, max(ks), num_beams=num_beams, batch_size=batch_size, device=device,
                               progress=progress)
    report = ranking_report(ranking.kept, targets, ks)
    report.update({k + EXCLUDED: v for k, v in ranking_report(ranking.excluded, targets, ks).items()})
    report["invalid_beam_share"] = ranking.invalid_share
    return report
