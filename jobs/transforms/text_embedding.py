"""Item text embeddings inside Spark tasks (`mapInPandas`), one encoder per Python worker.

The driver ships only the encoder's folder path and settings; each Python worker loads the model
once and keeps it for every later task (Spark reuses its Python workers). TextEncoder sorts each
batch by length, so padding stays small. On CPU a task uses `spark.task.cpus` torch threads, so the
executor's tasks share its cores instead of oversubscribing them; on a GPU executor a task uses the
GPU that Spark assigned it (resource `gpu`), or `cuda` when the executor has one GPU and no schedule.

Vectors equal `TextEncoder.encode` on the driver up to float32 rounding: an item's vector depends in
its last bits (measured: at most 1.5e-7 per component) on which items share its padded batch, not
on the thread count. See `tests/integration/test_embedders.py`.
"""
from __future__ import annotations

_ENCODERS: dict = {}

VECTOR_SCHEMA = "item_id string, content_hash string, vector array<float>"


def _device(requested: str) -> str:
    from pyspark import TaskContext

    task = TaskContext.get()
    gpus = task.resources().get("gpu") if task is not None else None
    if requested in ("auto", "cuda") and gpus is not None and gpus.addresses:
        return f"cuda:{gpus.addresses[0]}"
    return requested


def _encoder(model_path: str, device: str, max_length: int, amp_dtype: str):
    from genrec_core.embed.text import TextEncoder

    key = (model_path, device, max_length, amp_dtype)
    if key not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[key] = TextEncoder(model_path, device=device, max_length=max_length, amp_dtype=amp_dtype)
    return _ENCODERS[key]


def embed_items(items_df, model_path: str, device: str = "auto", max_length: int = 64,
                batch_size: int = 64, threads: int = 1, amp_dtype: str = "float16"):
    """items_df(item_id, content_hash, title, brand, categories) -> (item_id, content_hash, vector).

    Rows keep their partitioning; the caller decides how many tasks share the work."""

    def embed(batches):
        import pandas as pd
        import torch

        from genrec_core.embed.text import item_text

        torch.set_num_threads(max(1, threads))
        model = None
        for pdf in batches:
            if model is None:  # a task with no rows loads nothing
                model = _encoder(model_path, _device(device), max_length, amp_dtype)
            texts = [item_text(t, b, c) for t, b, c in zip(pdf.title, pdf.brand, pdf.categories)]
            vectors = model.encode(texts, batch_size=batch_size)
            yield pd.DataFrame({"item_id": pdf.item_id, "content_hash": pdf.content_hash,
                                "vector": list(vectors)})

    return items_df.select("item_id", "content_hash", "title", "brand", "categories").mapInPandas(
        embed, VECTOR_SCHEMA)
