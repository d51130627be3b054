"""`mlflow.pyfunc.load_model("models:/genrec-tokenizer@champion").predict(vectors)` -> int64[n, L]
semantic codes of each embedding row (the map's dedup digit, when there is one, is not a function of
the vector: read it from item_sid)."""
from __future__ import annotations

import mlflow
import numpy as np


class TokenizerModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from jobs.lake.tokenizer_files import read_tokenizer

        self.tokenizer = read_tokenizer(context.artifacts["files"])

    def predict(self, context, model_input, params=None):
        vectors = np.asarray(getattr(model_input, "values", model_input), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.tokenizer.dim:
            raise ValueError(f"expected vectors of shape [n, {self.tokenizer.dim}], got {vectors.shape}")
        return self.tokenizer.encode(vectors)


mlflow.models.set_model(TokenizerModel())
