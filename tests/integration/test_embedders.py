"""Stage c on Spark + Delta: ALS covers cold items deterministically, the text embedder resumes after a
kill and ends equal to a clean run, and fused and FAMAE write one unit vector per item.

The tests use their own small lakehouse and catalogue database (12 hand-made items), so they need no
ingest run and leave the shared `genrec` tables alone.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import numpy as np
import pytest

pytestmark = pytest.mark.integration

# 12 items; i09..i11 have no interactions: i09 shares the leaf of i00/i01, i10 only the top category
# "Beauty", and i11's category is unknown.
ITEMS = [
    ("i00", "Rose lipstick", "Acme", "Beauty > Lips > Lipstick"),
    ("i01", "Coral lipstick", "Acme", "Beauty > Lips > Lipstick"),
    ("i02", "Lip balm", "Balmy", "Beauty > Lips > Balm"),
    ("i03", "Night cream", "Dermo", "Beauty > Skin > Cream"),
    ("i04", "Day cream", "Dermo", "Beauty > Skin > Cream"),
    ("i05", "Serum", None, "Beauty > Skin > Serum"),
    ("i06", "Hammer", "Toolco", "Tools > Hand > Hammer"),
    ("i07", "Screwdriver", "Toolco", "Tools > Hand > Driver"),
    ("i08", "Drill", "Powr", "Tools > Power > Drill"),
    ("i09", "Plum lipstick", "Acme", "Beauty > Lips > Lipstick"),
    ("i10", "Nail polish", "Shiny", "Beauty > Nails > Polish"),
    ("i11", "Garden hose", None, "Garden > Water > Hose"),
]
BASKETS = {"u0": ["i00", "i01", "i02", "i00"], "u1": ["i01", "i02", "i00", "i05"],
           "u2": ["i03", "i04", "i05", "i03"], "u3": ["i04", "i05", "i03"],
           "u4": ["i06", "i07", "i08", "i06"], "u5": ["i07", "i08", "i06", "i01"],
           "u6": ["i02", "i03", "i00", "i04", "i07"]}


class SimulatedKill(RuntimeError):
    """Raised from the after-shard hook, as if the process died right after a shard's commit."""


def _write_inputs(ctx):
    from jobs.lake import delta_io
    from jobs.stages import sequences
    from schemas import tables as S

    spark = ctx.spark
    items = spark.createDataFrame(
        [(i, t, b, c, 1.0, "", None, f"h-{i}") for i, t, b, c in ITEMS],
        "item_id string, title string, brand string, categories string, price double, description string, "
        "attributes string, content_hash string")
    start = datetime(2026, 1, 1)
    events = [(f"e-{u}-{k}", u, i, "view", start + timedelta(hours=k), None, None, (start + timedelta(hours=k)).date(),
               (start + timedelta(hours=k)).date()) for u, basket in BASKETS.items() for k, i in enumerate(basket)]
    clean = spark.createDataFrame(events, "event_id string, user_id string, item_id string, event_type string, "
                                          "event_time timestamp, session_id string, rating double, ingest_date date, "
                                          "event_date date")
    delta_io.overwrite(spark, ctx.settings, S.ITEMS, items)
    delta_io.overwrite(spark, ctx.settings, S.INTERACTIONS_CLEAN, clean)
    sequences.main(ctx)


@pytest.fixture(scope="module")
def lake(spark, tiny_config, tmp_path_factory):
    from jobs.lake.settings import load_settings
    from jobs.stages.context import RunContext

    settings = dataclasses.replace(load_settings(), lakehouse=tmp_path_factory.mktemp("embed-lake"),
                                   database="genrec_embed_tests")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
    embed = dataclasses.replace(tiny_config.embed, shard_size=5,
                                als=dataclasses.replace(tiny_config.embed.als, rank=4, max_iter=5),
                                famae=dataclasses.replace(tiny_config.embed.famae, d_model=16, num_heads=2,
                                                          num_layers=1, batch_size=16, steps=10))
    # Baskets of 3-5 events: k-core filtering would leave no history, so it is off here.
    clean = dataclasses.replace(tiny_config.clean, kcore=0)
    ctx = RunContext(settings=settings, config=dataclasses.replace(tiny_config, embed=embed, clean=clean),
                     logical_time=datetime(2026, 3, 1), _spark=spark)
    _write_inputs(ctx)
    return ctx


def _with(ctx, embedder: str):
    config = dataclasses.replace(ctx.config, embed=dataclasses.replace(ctx.config.embed, embedder=embedder))
    return dataclasses.replace(ctx, config=config, results={})


def _rows(ctx, encoder: str) -> dict:
    from pyspark.sql import functions as F

    from jobs.lake import delta_io
    from schemas import tables as S

    df = delta_io.read(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS).where(F.col("encoder") == encoder)
    return {r.item_id: (r.content_hash, r.dim, np.array(r.vector, dtype=np.float32)) for r in df.collect()}


def _count(ctx, encoder: str) -> int:
    from pyspark.sql import functions as F

    from jobs.lake import delta_io
    from schemas import tables as S

    return delta_io.read(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS).where(F.col("encoder") == encoder).count()


def _version(ctx) -> int:
    from jobs.lake import delta_io
    from schemas import tables as S

    return delta_io.latest_version(ctx.spark, ctx.settings, S.ITEM_EMBEDDINGS)


def test_als_covers_cold_items_and_reruns_commit_nothing(lake):
    from genrec_core.embed.collab import normalize_rows
    from jobs.stages import embed

    ctx = _with(lake, "als")
    first = embed.main(ctx)
    assert first["encoder"] == embed.encoder_for(ctx.config) == "als-r4"
    rows = _rows(ctx, "als-r4")
    assert sorted(rows) == [i for i, *_ in ITEMS]
    vectors = {i: v for i, (_, dim, v) in rows.items()}
    assert all(dim == 4 for _, dim, _ in rows.values())
    np.testing.assert_allclose([np.linalg.norm(v) for v in vectors.values()], 1.0, atol=1e-5)
    # Cold rule: i09 = mean of its leaf (i00, i01); i10 = mean of top "Beauty"; i11 = mean of all.
    mean = lambda ids: normalize_rows(np.sum([vectors[i] for i in ids], axis=0)[None])[0]  # noqa: E731
    np.testing.assert_allclose(vectors["i09"], mean(["i00", "i01"]), atol=1e-5)
    np.testing.assert_allclose(vectors["i10"], mean([f"i0{k}" for k in range(6)]), atol=1e-5)
    np.testing.assert_allclose(vectors["i11"], mean([f"i0{k}" for k in range(9)]), atol=1e-5)
    # A rerun on the same data computes bit-identical factors, so the MERGE is a no-op.
    before = _version(ctx)
    embed.main(ctx)
    assert _version(ctx) == before
    again = _rows(ctx, "als-r4")
    assert all(np.array_equal(again[i][2], v) for i, v in vectors.items())


def test_text_embedding_resumes_after_a_kill_and_equals_a_clean_run(lake):
    from delta.tables import DeltaTable

    from jobs.stages import embed

    ctx = _with(lake, "text")
    encoder = embed.encoder_for(ctx.config)

    def crash_after_first_shard(shard: int, version: int) -> None:
        raise SimulatedKill(f"killed after shard {shard}")

    with pytest.raises(SimulatedKill):
        embed.main(ctx, after_shard=crash_after_first_shard)
    assert sorted(_rows(ctx, encoder)) == ["i00", "i01", "i02", "i03", "i04"]
    committed = _version(ctx)
    resumed = embed.main(ctx)
    # The rerun keeps the killed run's plan and appends only its two unfinished shards.
    assert (resumed["embedded"], resumed["shards"]) == (7, 2)
    assert _version(ctx) == committed + 2
    assert _count(ctx, encoder) == len(ITEMS)
    after_resume = _rows(ctx, encoder)
    assert embed.main(ctx)["embedded"] == 0

    DeltaTable.forPath(ctx.spark, str(ctx.settings.table_path("item_embeddings"))).delete(
        f"encoder = '{encoder}'")
    assert embed.main(ctx)["embedded"] == len(ITEMS)
    clean = _rows(ctx, encoder)
    assert sorted(clean) == sorted(after_resume) == [i for i, *_ in ITEMS]
    for item, (content_hash, dim, vector) in clean.items():
        assert after_resume[item][:2] == (content_hash, dim) == (f"h-{item}", 384)
        assert np.array_equal(after_resume[item][2], vector)


def test_executor_embedding_equals_the_driver_encoder(lake):
    """Executor tasks and the driver run the same encoder; only float32 rounding separates them
    (a vector's last bits depend on its batch companions), so the tolerance is 1e-6 per component."""
    from genrec_core.embed.text import TextEncoder, default_model_path, item_text
    from jobs.lake import delta_io
    from jobs.transforms.text_embedding import embed_items
    from schemas import tables as S

    items = delta_io.read(lake.spark, lake.settings, S.ITEMS)
    on_executors = {r.item_id: (r.content_hash, np.array(r.vector, dtype=np.float32))
                    for r in embed_items(items.repartition(3), default_model_path(), device="cpu").collect()}
    pdf = items.orderBy("item_id").toPandas()
    on_driver = TextEncoder(default_model_path(), device="cpu").encode(
        [item_text(t, b, c) for t, b, c in zip(pdf.title, pdf.brand, pdf.categories)])
    assert sorted(on_executors) == pdf.item_id.tolist()
    assert [on_executors[i][0] for i in pdf.item_id] == pdf.content_hash.tolist()
    np.testing.assert_allclose(np.stack([on_executors[i][1] for i in pdf.item_id]), on_driver, rtol=0, atol=1e-6)


@pytest.mark.parametrize("embedder, dim", [("fused", 384 + 4), ("famae", 5 * 16)])
def test_fused_and_famae_write_a_unit_vector_per_item(lake, embedder, dim):
    from jobs.stages import embed

    ctx = _with(lake, embedder)
    result = embed.main(ctx)
    assert result["encoder"] == embed.encoder_for(ctx.config)
    rows = _rows(ctx, result["encoder"])
    assert sorted(rows) == [i for i, *_ in ITEMS]
    assert {d for _, d, _ in rows.values()} == {dim}
    np.testing.assert_allclose([np.linalg.norm(v) for _, _, v in rows.values()], 1.0, atol=1e-5)
