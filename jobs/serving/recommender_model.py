"""`mlflow.pyfunc.load_model("models:/genrec-recommender-<kind>@champion").predict(histories)`:
a pandas DataFrame whose `history` column holds lists of item ids, oldest first; the answer is a
DataFrame whose `items` column holds each history's top-k item ids, best first.
params: k (default 10), exclude_history (default false)."""
from __future__ import annotations

import mlflow


class RecommenderModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from jobs.lake.recommender_files import read_recommender

        self.recommender, self.item_ids = read_recommender(context.artifacts["files"])
        self.index = {item: i for i, item in enumerate(self.item_ids)}

    def predict(self, context, model_input, params=None):
        import numpy as np

        params = params or {}
        k, exclude = int(params.get("k", 10)), bool(params.get("exclude_history", False))
        import pandas as pd

        rows = [list(r) for r in model_input["history"]]
        unknown = sorted({i for row in rows for i in row if i not in self.index})
        if unknown:
            raise ValueError(f"{len(unknown)} history items are not in the model's catalogue, e.g. {unknown[:3]}")
        histories = [np.array([self.index[i] for i in row], dtype=np.int64) for row in rows]
        ranking = self.recommender.rank(histories, k, num_beams=max(k, 20), batch_size=256, device="cpu")
        ranked = ranking.excluded if exclude else ranking.kept
        return pd.DataFrame({"items": [[self.item_ids[i] for i in row if i >= 0] for row in ranked]})


mlflow.models.set_model(RecommenderModel())
