"""Scoring users on Spark executors: the recommender's files travel once as a broadcast, each Python
worker builds the model once, and `mapInPandas` ranks a partition's histories batch by batch."""
from __future__ import annotations

from collections.abc import Iterator

# One recommender per worker process and model version: Spark reuses Python workers across tasks.
_LOADED: dict[str, tuple] = {}

OUTPUT_DDL = "user_id string, rank int, item_id string, score double"


def _model(key: str, files: dict[str, bytes]):
    if key not in _LOADED:
        from genrec_core.model.recommenders import from_files

        rec, item_ids = from_files(files)
        _LOADED.clear()
        _LOADED[key] = (rec, item_ids, {item: i for i, item in enumerate(item_ids)})
    return _LOADED[key]


def score_partitions(broadcast, key: str, k: int, exclude_history: bool, num_beams: int, batch_size: int):
    """A mapInPandas function: (user_id, history) frames -> OUTPUT_DDL frames, k rows per user.

    broadcast.value = {"files": recommender files, "active": item ids allowed in the output}. Items
    that are not active in the current map are ranked past; history items the model has never seen
    (items newer than its training) cannot be read by it and are left out of the history."""
    def run(frames: Iterator) -> Iterator:
        import numpy as np
        import pandas as pd
        import torch

        torch.set_num_threads(1)  # one task per core already
        payload = broadcast.value
        rec, item_ids, index = _model(key, payload["files"])
        allowed = np.zeros(len(item_ids), dtype=bool)
        allowed[[index[i] for i in payload["active"] if i in index]] = True
        extra = int((~allowed).sum())
        for frame in frames:
            histories = [np.array([index[i] for i in h if i in index], dtype=np.int64) for h in frame["history"]]
            users = frame["user_id"].tolist()
            # Similar history lengths share a batch, so that a batch fetches only as many candidates as
            # it needs to keep k after ranking out inactive items and (optionally) the history.
            order = np.argsort([len(h) for h in histories], kind="stable")
            out = {"user_id": [], "rank": [], "item_id": [], "score": []}
            for start in range(0, len(order), batch_size):
                part = order[start:start + batch_size]
                chunk = [histories[i] for i in part]
                fetch = min(len(item_ids), k + extra + (max(len(h) for h in chunk) if exclude_history else 0))
                ranking = rec.rank(chunk, fetch, num_beams=max(num_beams, fetch), batch_size=batch_size,
                                   device="cpu")
                items = ranking.excluded if exclude_history else ranking.kept
                scores = ranking.excluded_scores if exclude_history else ranking.kept_scores
                for u, row, row_scores in zip(part, items, scores):
                    keep = [j for j, i in enumerate(row) if i >= 0 and allowed[i]][:k]
                    out["user_id"] += [users[u]] * len(keep)
                    out["rank"] += range(1, len(keep) + 1)
                    out["item_id"] += [item_ids[row[j]] for j in keep]
                    out["score"] += [float(row_scores[j]) for j in keep]
            yield pd.DataFrame({"user_id": out["user_id"], "rank": np.array(out["rank"], dtype=np.int32),
                                "item_id": out["item_id"], "score": np.array(out["score"], dtype=np.float64)})
    return run
