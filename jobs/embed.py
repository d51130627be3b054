"""Stage c: embed item text, incrementally.

Only items whose (content_hash, encoder) is not yet in `item_embeddings` are embedded; the rest keep
their vectors. The table is updated with one MERGE, so a killed run leaves the table as it was.
"""
from __future__ import annotations

from pathlib import Path

from jobs import delta_io
from jobs.context import RunContext
from schemas import tables as S


def encoder_name(model_path: str) -> str:
    return Path(model_path).name if Path(model_path).name != "model" else Path(model_path).parent.name


def main(ctx: RunContext) -> dict:
    import pandas as pd
    from pyspark.sql import functions as F
    from tqdm.auto import tqdm

    from genrec_core.embed.text import TextEncoder, default_model_path, item_text

    spark, settings, cfg = ctx.spark, ctx.settings, ctx.config.embed
    model_path = cfg.model_path or default_model_path()
    encoder = encoder_name(model_path)
    items = delta_io.read(spark, settings, S.ITEMS).select("item_id", "title", "brand", "categories",
                                                           "content_hash")
    todo = items
    if delta_io.table_exists(spark, settings, S.ITEM_EMBEDDINGS):
        done = (delta_io.read(spark, settings, S.ITEM_EMBEDDINGS).where(F.col("encoder") == encoder)
                .select("item_id", "content_hash"))
        todo = items.join(done, on=["item_id", "content_hash"], how="left_anti")
    pdf = todo.orderBy("item_id").toPandas()
    if len(pdf):
        model = TextEncoder(model_path, device=cfg.device, max_length=cfg.max_length)
        texts = [item_text(t, b, c) for t, b, c in zip(pdf.title, pdf.brand, pdf.categories)]
        with tqdm(total=len(texts), desc=f"embed ({encoder}, {model.device})", unit="item") as bar:
            vectors = model.encode(texts, batch_size=cfg.batch_size, progress=bar.update)
        out = pd.DataFrame({"item_id": pdf.item_id, "encoder": encoder, "content_hash": pdf.content_hash,
                            "dim": model.dim, "vector": list(vectors.astype("float32"))})
        new = spark.createDataFrame(out, schema="item_id string, encoder string, content_hash string, "
                                                "dim int, vector array<float>")
        version = delta_io.merge_upsert(spark, settings, S.ITEM_EMBEDDINGS, new, ("item_id", "encoder"),
                                        delete_missing=False)
    else:
        version = delta_io.latest_version(spark, settings, S.ITEM_EMBEDDINGS)
    # Items that left the catalogue lose their vectors, so the table mirrors `items`.
    stale = delta_io.read(spark, settings, S.ITEM_EMBEDDINGS).join(items.select("item_id"), "item_id", "left_anti")
    if stale.limit(1).count():
        from delta.tables import DeltaTable

        DeltaTable.forPath(spark, str(settings.table_path("item_embeddings"))).alias("t").merge(
            stale.select("item_id", "encoder").alias("s"),
            "t.item_id = s.item_id AND t.encoder = s.encoder").whenMatchedDelete().execute()
        version = delta_io.latest_version(spark, settings, S.ITEM_EMBEDDINGS)
    return {"encoder": encoder, "embedded": int(len(pdf)), "model_path": model_path,
            "versions": {"item_embeddings": version}}
