"""The SID map night after night, on synthetic data, Spark, Delta and MLflow: night 1 fits and publishes;
night 2 brings 5% new items, 1% retired and 1% changed text, in assign mode; night 3 brings the retired
items back; then refits, with and without alignment, against the churn gate."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

import pytest

pytestmark = pytest.mark.integration

N_ITEMS = 400
NIGHT = {n: datetime(2026, 1, n, tzinfo=timezone.utc) for n in (1, 2, 3, 4)}


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    """The item sets of each night and a home of its own (own catalogue database, lakehouse, MLflow)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genrec_core.config import load_config
    from jobs.lake.settings import load_settings
    from jobs.sources.generator import generate
    from schemas import tables as S
    from schemas.arrow import arrow_schema

    root = tmp_path_factory.mktemp("nights")
    syn = dataclasses.replace(load_config("tiny").data.synthetic, n_items=N_ITEMS, n_users=300)
    generate(spark, syn, 7, root / "base")
    items = pd.read_parquet(root / "base" / "items").sort_values("item_id").reset_index(drop=True)
    ids = items.item_id.tolist()
    new = ids[-N_ITEMS // 20:]                      # 5%: absent on night 1
    retired = ids[:N_ITEMS // 100]                  # 1%: gone on night 2
    changed = ids[N_ITEMS // 100:2 * N_ITEMS // 100]  # 1%: new title on night 2
    night2 = items[~items.item_id.isin(retired)].copy()
    night2.loc[night2.item_id.isin(changed), "title"] = night2.loc[night2.item_id.isin(changed), "title"] + " (2027 edition)"
    catalogues = {1: items[~items.item_id.isin(new)], 2: night2,
                  3: pd.concat([night2, items[items.item_id.isin(retired)]])}
    for night, frame in catalogues.items():
        folder = root / f"night{night}"
        (folder / "items").mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame, schema=arrow_schema(S.RAW_ITEMS), preserve_index=False),
                       folder / "items" / "part-0.parquet")
        (folder / "events").symlink_to(root / "base" / "events")
    base = load_settings()
    settings = dataclasses.replace(base, home=root, lakehouse=root / "lakehouse", database="genrec_nights",
                                   mlflow_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
                                   mlflow_artifacts=root / "mlruns" / "artifacts")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
    return {"root": root, "settings": settings, "new": new, "retired": retired, "changed": changed,
            "old_kept": sorted(set(ids) - set(new) - set(retired) - set(changed))}


def night(spark, world, n: int, *overrides: str, stages=("ingest", "embed", "tokenize", "gate", "publish")):
    from genrec_core.config import load_config
    from jobs.stages import pipeline
    from jobs.stages.context import RunContext

    folder = world["root"] / f"night{min(n, 3)}"
    cfg = load_config("tiny", overrides=(f"data.dataset=landed:{folder}",
                                         "tokenize.on_content_change=reassign", *overrides))
    ctx = RunContext(settings=world["settings"], config=cfg, logical_time=NIGHT[n], _spark=spark)
    for stage in stages:
        pipeline.run_stage(ctx, stage)
    return ctx


def sid_rows(spark, world) -> dict:
    return {r.item_id: r for r in spark.sql(f"SELECT * FROM {world['settings'].qualified('item_sid')}").collect()}


def manifest(spark, world, map_version: str):
    return spark.sql(f"SELECT * FROM {world['settings'].qualified('sid_map_versions')} "
                     f"WHERE map_version = '{map_version}'").first()


@pytest.fixture(scope="module")
def nights(spark, world):
    ctx1 = night(spark, world, 1)
    one = sid_rows(spark, world)
    ctx2 = night(spark, world, 2, "tokenize.mode=assign")
    two = sid_rows(spark, world)
    return {"ctx1": ctx1, "ctx2": ctx2, "one": one, "two": two}


def test_night_one_fits_because_there_is_no_map(nights, world):
    life = nights["ctx1"].results["tokenize"]["lifecycle"]
    assert (life["mode"], life["reason"]) == ("refit", "no published map")
    assert len(nights["one"]) == N_ITEMS - len(world["new"])


def test_unchanged_old_items_keep_their_sid_byte_for_byte(nights, world):
    one, two = nights["one"], nights["two"]
    for item in world["old_kept"]:
        assert (two[item].sid, list(two[item].codes)) == (one[item].sid, list(one[item].codes))
        assert two[item].status == "active"


def test_every_active_item_has_a_unique_sid(nights, world):
    active = [r.sid for r in nights["two"].values() if r.status == "active"]
    assert len(active) == N_ITEMS - len(world["retired"]) == len(set(active))
    assert {r.map_version for r in nights["two"].values()} == {nights["ctx2"].results["tokenize"]["map_version"]}


def test_retired_items_are_marked_and_left_out_of_the_trie(nights, world, spark):
    from jobs.stages import train

    two = nights["two"]
    for item in world["retired"]:
        assert two[item].status == "retired" and two[item].retired_at.date() == NIGHT[2].date()
        assert two[item].sid == nights["one"][item].sid
    _, _, trie_items, codes, _ = train.load_map(nights["ctx2"])
    assert set(world["retired"]).isdisjoint(trie_items) and len(trie_items) == N_ITEMS - len(world["retired"])
    current = spark.sql(f"SELECT item_id FROM {world['settings'].qualified('item_sid_current')}").collect()
    assert {r.item_id for r in current} == set(trie_items)


def test_manifest_counts_are_exact(nights, world, spark):
    result = nights["ctx2"].results
    row = manifest(spark, world, result["publish"]["map_version"])
    assert (row.mode, row.parent_map_version) == ("assign", nights["ctx1"].results["publish"]["map_version"])
    assert (row.n_new, row.n_retired, row.n_reassigned, row.n_returned, row.n_moved) == (
        len(world["new"]), len(world["retired"]), len(world["changed"]), 0, 0)
    assert (row.churn_full, row.churn_prefix, row.churn_first, row.churn_accepted) == (0.0, 0.0, 0.0, False)
    assert row.tokenizer_version == manifest(spark, world, row.parent_map_version).tokenizer_version
    assert row.n_items == N_ITEMS - len(world["retired"])
    assert row.item_sid_version == spark.sql(
        f"DESCRIBE HISTORY {world['settings'].qualified('item_sid')}").first().version


def test_sid_changes_show_only_what_changed(nights, world, spark):
    rows = spark.sql(f"SELECT * FROM {world['settings'].qualified('sid_changes')}").collect()
    inserts = [r for r in rows if r.change == "insert"]
    assert len(inserts) == N_ITEMS  # night 1's items, then night 2's new ones
    others = {r.item_id: r.change for r in rows if r.change != "insert"}
    assert {i for i, c in others.items() if c == "retire"} == set(world["retired"])
    assert set(others) - set(world["retired"]) <= set(world["changed"])
    assert all(c == "update" for i, c in others.items() if i in world["changed"])


def test_rerun_of_night_two_changes_nothing(nights, world, spark):
    from jobs.lake import delta_io
    from schemas import tables as S

    settings = world["settings"]
    before = {t: delta_io.latest_version(spark, settings, S.BY_NAME[t]) for t in ("item_sid", "sid_map_versions")}
    ctx = night(spark, world, 2, "tokenize.mode=assign")
    assert ctx.results["publish"]["published"] is False
    assert ctx.results["tokenize"]["map_version"] == nights["ctx2"].results["tokenize"]["map_version"]
    assert sid_rows(spark, world) == nights["two"]
    assert before == {t: delta_io.latest_version(spark, settings, S.BY_NAME[t]) for t in before}


def test_auto_assigns_when_no_trigger_fires(nights, world, spark):
    ctx = night(spark, world, 2, stages=("tokenize",))
    life = ctx.results["tokenize"]["lifecycle"]
    assert life["mode"] == "assign" and life["reason"].startswith("no drift trigger fired")
    ctx = night(spark, world, 2, "tokenize.refit_new_share=0.01", stages=("tokenize",))
    assert ctx.results["tokenize"]["lifecycle"]["mode"] == "refit"
    assert "tokenize.refit_new_share" in ctx.results["tokenize"]["lifecycle"]["reason"]
    ctx = night(spark, world, 2, "tokenize.niter=11", stages=("tokenize",))
    assert ctx.results["tokenize"]["lifecycle"]["reason"].endswith("(tokenize.niter changed)")


def test_a_returning_item_gets_its_sid_back(nights, world, spark):
    ctx = night(spark, world, 3, "tokenize.mode=assign")
    three = sid_rows(spark, world)
    for item in world["retired"]:
        assert (three[item].status, three[item].sid) == ("active", nights["one"][item].sid)
        assert three[item].retired_at is None
    row = manifest(spark, world, ctx.results["publish"]["map_version"])
    assert (row.n_returned, row.n_new, row.n_retired, row.n_moved) == (len(world["retired"]), 0, 0, 0)
    returns = spark.sql(f"SELECT item_id, old_sid, new_sid FROM {world['settings'].qualified('sid_changes')} "
                        f"WHERE change = 'return'").collect()
    assert {r.item_id for r in returns} == set(world["retired"]) and all(r.old_sid == r.new_sid for r in returns)


def test_churn_gate_blocks_an_unaligned_refit_and_accept_churn_lets_it_through(nights, world, spark):
    from jobs.stages.gate import GateFailed

    plain = ("tokenize.mode=refit", "tokenize.align=false", "tokenize.warm_start=false", "seed=99")
    with pytest.raises(GateFailed, match="gate.max_churn"):
        night(spark, world, 4, *plain)
    ctx = night(spark, world, 4, *plain, "gate.accept_churn=true")
    row = manifest(spark, world, ctx.results["publish"]["map_version"])
    assert row.mode == "refit" and row.churn_accepted is True and row.churn_full > 0.3
    assert row.n_moved == round(row.churn_full * N_ITEMS)
    assert json.loads(row.config)["code_level_sizes"] == ctx.results["tokenize"]["code_level_sizes"]
    active = [r.sid for r in sid_rows(spark, world).values() if r.status == "active"]
    assert len(active) == len(set(active)) == N_ITEMS
