"""`genrec generate` on local Spark: exact manifest, one defect per malformed row, a matching
catalogue, determinism across partitionings, atomic reruns, and the Spark draws against their
pure references (genrec_core.data.synthetic)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from genrec_core.config import SyntheticConfig
from genrec_core.data import synthetic as syn

pytestmark = pytest.mark.integration

# Small, and messier than the demo so that every kind of row shows up many times.
MESSY = SyntheticConfig(n_users=300, n_items=100, mean_events_per_user=12.0, days=14, duplicate_rate=0.04,
                        near_duplicate_rate=0.04, malformed_rate=0.06, unknown_item_rate=0.02,
                        bot_user_rate=0.03, late_rate=0.05)
SEED = 11
NEAR_SECONDS = 30  # CleanConfig.near_duplicate_seconds


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    from jobs.sources.generator import generate

    out = tmp_path_factory.mktemp("generate") / "a"
    return generate(spark, MESSY, SEED, out)


def _read(spark, result):
    from schemas import tables as S
    from schemas.spark import struct_type

    events = spark.read.schema(struct_type(S.RAW_EVENTS)).parquet(str(result.events))
    items = spark.read.schema(struct_type(S.RAW_ITEMS)).parquet(str(result.items))
    return events, items


def _flags(events, items):
    """Each quarantine rule of the clean stage, judged independently of the generator."""
    from pyspark.sql import functions as F

    known = F.broadcast(items.select("item_id", F.lit(True).alias("_known")))
    df = events.join(known, "item_id", "left")
    ts = F.expr("try_to_timestamp(event_time)")
    rating = F.expr("try_cast(rating AS double)")
    rules = {
        "null_user_id": F.col("user_id").isNull(),
        "null_item_id": F.col("item_id").isNull(),
        "bad_event_time": ts.isNull(),
        "event_time_out_of_window": (ts < F.lit("2000-01-01").cast("timestamp"))
        | (ts >= F.lit("2030-01-01").cast("timestamp")),
        "unknown_event_type": ~F.col("event_type").isin(*syn.EVENT_TYPES),
        "bad_rating": F.col("rating").isNotNull() & (rating.isNull() | (rating < 0) | (rating > 5)),
        "unknown_item": F.col("item_id").isNotNull() & F.col("_known").isNull(),
    }
    flagged = df.select("*", *[F.coalesce(rule, F.lit(False)).cast("int").alias(f"_{name}")
                               for name, rule in rules.items()])
    return flagged.withColumn("_broken", sum(F.col(f"_{name}") for name in rules)), list(rules)


def _observed(events, items) -> dict[str, int]:
    """Row counts by kind, applying the clean stage's rules in its order: quarantine, exact
    duplicates, bot user-days (>= 20 events, median gap < 1 s), near-duplicates (30 s)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    flagged, rules = _flags(events, items)
    flagged = flagged.cache()
    counts = flagged.agg(*[F.sum(f"_{r}").alias(r) for r in rules]).first().asDict()
    valid = flagged.where("_broken = 0")
    identity = ["user_id", "item_id", "event_type", "event_time", "session_id", "rating"]
    unique = valid.dropDuplicates(identity)
    counts["exact_duplicates"] = valid.count() - unique.count()
    # try_: under ANSI mode Spark may evaluate these before the filter above, on malformed rows too.
    ts = F.expr("try_to_timestamp(event_time)")
    df = unique.withColumn("_ts", ts.cast("long")).withColumn("_date", F.to_date(ts))
    day = Window.partitionBy("user_id", "_date")
    df = df.withColumn("_gap", F.col("_ts") - F.lag("_ts").over(day.orderBy("_ts", "item_id", "event_type")))
    df = (df.withColumn("_n", F.count("*").over(day))
          .withColumn("_median", F.expr("percentile(_gap, 0.5)").over(day)))
    bot = (F.col("_n") >= 20) & (F.col("_median") < 1)
    counts["bot_events"] = df.where(bot).count()
    human = df.where(~bot).cache()
    same = Window.partitionBy("user_id", "_date", "item_id", "event_type").orderBy("_ts")
    human = human.withColumn("_since", F.col("_ts") - F.lag("_ts").over(same))
    counts["near_duplicates"] = human.where(F.col("_since") <= NEAR_SECONDS).count()
    clean = human.where(F.col("_since").isNull() | (F.col("_since") > NEAR_SECONDS))
    counts["clean_events"] = clean.count()
    counts["late_events"] = clean.where(F.to_date("ingest_date") > F.col("_date")).count()
    counts["raw_rows"] = events.count()
    flagged.unpersist()
    human.unpersist()
    return counts


def test_manifest_counts_every_kind_of_row_exactly(spark, generated) -> None:
    events, items = _read(spark, generated)
    counts = generated.manifest["counts"]
    assert _observed(events, items) == {k: v for k, v in counts.items() if k != "items"}
    assert min(counts.values()) > 0 and counts["items"] == MESSY.n_items
    assert counts["clean_events"] == syn.n_clean_events(MESSY)
    by_reason, by_rule = generated.manifest["by_reason"], generated.manifest["by_rule"]
    assert by_reason["unknown_item"] == counts["unknown_item"] and by_rule["bot_user_day"] == counts["bot_events"]
    assert json.loads((generated.events.parent / "_manifest.json").read_text()) == generated.manifest


def test_each_malformed_row_breaks_exactly_one_rule(spark, generated) -> None:
    from pyspark.sql import functions as F

    flagged, rules = _flags(*_read(spark, generated))
    assert flagged.where("_broken > 1").count() == 0
    assert flagged.where("_broken = 1").count() == sum(generated.manifest["by_reason"].values())
    # Defects are the documented ones: exactly these values, and no other unknown values.
    assert {r[0] for r in flagged.where("_unknown_event_type = 1").select("event_type").distinct().collect()} \
        == {syn.BAD_TYPE}
    ratings = flagged.where("_bad_rating = 1").select("rating").distinct().collect()
    assert {r[0] for r in ratings} == {syn.BAD_RATING}
    assert flagged.where("_unknown_item = 1").where(~F.col("item_id").startswith("X999")).count() == 0


def test_catalogue_matches_the_events(spark, generated) -> None:
    from pyspark.sql import functions as F

    events, items = _read(spark, generated)
    assert items.count() == items.select("item_id").distinct().count() == MESSY.n_items
    assert items.where(~F.col("item_id").rlike(r"^I\d{6}$") | F.col("title").isNull()).count() == 0
    assert items.where(F.size(F.split("categories", " > ")) != 3).count() == 0
    assert items.where(F.col("price").isNotNull() & F.expr("try_cast(price AS double) IS NULL")).count() == 0
    parsed = items.where(F.col("attributes").isNotNull()).select(F.from_json("attributes", "map<string,string>"))
    assert parsed.where(F.size(parsed.columns[0]) < 1).count() == 0
    # Every valid item id is in the catalogue; the rest are the X999 "unknown item" rows.
    ids = events.where(F.col("item_id").isNotNull()).join(items, "item_id", "left_anti")
    assert ids.where(~F.col("item_id").startswith("X999")).count() == 0
    users = events.where(F.col("user_id").isNotNull())
    assert users.where(~F.col("user_id").rlike(r"^U\d{6}$")).count() == 0
    assert users.select("user_id").distinct().count() <= MESSY.n_users
    assert events.where(F.col("rating").isNotNull() & ~F.col("event_type").isin("rate", "teleport")).count() == 0


def test_humans_are_spaced_and_bots_burst(spark, generated) -> None:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    flagged, _ = _flags(*_read(spark, generated))
    valid = flagged.where("_broken = 0").dropDuplicates(["user_id", "event_time", "item_id", "event_type"])
    ts = F.expr("try_to_timestamp(event_time)")
    df = valid.withColumn("_ts", ts.cast("long")).withColumn("_date", F.to_date(ts))
    per_day = df.groupBy("user_id", "_date").count()
    bots = per_day.where("count >= 40")  # bot days have 40-80 events, human days at most ~170
    assert bots.count() > 0 and per_day.agg(F.max("count")).first()[0] <= syn.BOT_EVENTS[1]
    humans = df.join(bots, ["user_id", "_date"], "left_anti")
    # Consecutive human events are >= 41 s apart; within the near-duplicate window there are only
    # the injected copies, 1-10 s after their original (the event after a copy is then >= 31 s on).
    by_user = Window.partitionBy("user_id").orderBy("_ts")
    gaps = humans.withColumn("_gap", F.col("_ts") - F.lag("_ts").over(by_user))
    small = gaps.where(F.col("_gap") <= NEAR_SECONDS).select("_gap").distinct().collect()
    assert {r[0] for r in small} <= set(range(1, syn.NEAR_DUPLICATE_MAX_OFFSET + 1))
    assert humans.select("session_id").distinct().count() < humans.count() / 2  # sessions hold several events


def test_cli_is_deterministic_across_partitionings_and_reruns_atomically(spark, generated, tmp_path) -> None:
    """The CLI with MESSY's settings but another task count gives the fixture's rows exactly; a rerun
    into the same folder replaces it whole and leaves no temporary folder behind."""
    from pyspark.testing import assertDataFrameEqual
    from typer.testing import CliRunner

    from jobs.cli.app import app

    out = tmp_path / "landing"
    sets = [f"data.synthetic.{f.name}={getattr(MESSY, f.name)}" for f in dataclasses.fields(MESSY)
            if f.name not in ("n_users", "n_items", "start_date")]
    args = ["generate", "--out", str(out), "--users", str(MESSY.n_users), "--items", "1e2", "--seed", str(SEED),
            *[x for kv in sets for x in ("--set", kv)], "--set", "data.synthetic.partitions=3"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    again = json.loads((out / "_manifest.json").read_text())
    assert again["counts"] == generated.manifest["counts"] and again["sizes"]["partitions"] == 3
    landed = type(generated)(out / "events", out / "items", again)
    (ev_a, it_a), (ev_b, it_b) = _read(spark, generated), _read(spark, landed)
    assertDataFrameEqual(ev_b, ev_a)
    assertDataFrameEqual(it_b, it_a)

    (out / "stray.txt").write_text("left by hand")
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    assert json.loads((out / "_manifest.json").read_text()) == again
    assert sorted(p.name for p in out.iterdir()) == ["_manifest.json", "events", "items"]
    assert [p.name for p in tmp_path.iterdir()] == ["landing"]  # no temporary siblings left
    assert CliRunner().invoke(app, [*args, "--events", "lots"]).exit_code == 2
    assert "Zipf" in CliRunner().invoke(app, ["generate", "--help"]).output


def test_spark_draws_match_the_pure_references(spark) -> None:
    from pyspark.sql import functions as F

    from jobs.sources import generator as G

    plan = syn.plan(MESSY, SEED)
    g = G._Gen(plan)
    ids = spark.range(-50, 2000)
    i = F.col("id")
    n = F.pmod(i, F.lit(97)) + 1
    consts = {s: g.at(tuple(syn.zipf_constant(k, s) for k in range(1, 98)), n - 1) for s in (1.0, 1.1)}
    rows = ids.select(
        i, g.u("stream", i, i * 3).alias("u"),
        *[G.zipf_rank_col(g.u("rank", i), n, consts[s], s).alias(f"zipf_{s}") for s in (1.0, 1.1)],
        G.alias_draw_col(g, g.u("a", i), g.u("b", i), plan.alias_prob, plan.alias_index).alias("alias"),
    ).orderBy("id").collect()
    key = np.array([r.id for r in rows])
    u = np.array([syn.hash_uniform(SEED, "stream", k, 3 * k) for k in key])
    np.testing.assert_array_equal(np.array([r.u for r in rows]), u)
    urank = np.array([syn.hash_uniform(SEED, "rank", k) for k in key])
    sizes = key % 97 + 1
    for s in (1.0, 1.1):
        ref = syn.zipf_rank(urank, sizes, s, [syn.zipf_constant(int(k), s) for k in sizes])
        np.testing.assert_array_equal(np.array([r[f"zipf_{s}"] for r in rows]), ref)
    ua, ub = ([syn.hash_uniform(SEED, st, k) for k in key] for st in ("a", "b"))
    np.testing.assert_array_equal(np.array([r.alias for r in rows]),
                                  syn.alias_draw(ua, ub, plan.alias_prob, plan.alias_index))
    # The activity profile in Spark gives the reference's counts, user by user.
    users = G._users(spark.range(0, plan.n_users).withColumnRenamed("id", "r"), g)
    n_ev = [r.n_ev for r in users.where(~F.col("bot")).orderBy("r").select("n_ev").collect()]
    np.testing.assert_array_equal(n_ev, syn.activity_counts(plan.n_humans, plan.n_events,
                                                            MESSY.min_events_per_user))
    sessions = G._all_sessions(spark, g).select("r", "j", "d", "first_day", "n_sess", "span", "phase").collect()
    assert len(sessions) > plan.n_users and all(
        s.d == s.first_day + syn.session_day(s.j, s.n_sess, s.span, s.phase) for s in sessions)
    # Hash-partitioning on partition_keys[p] lands a row in partition p.
    keys = syn.partition_keys(7)
    placed = (spark.createDataFrame([(k, p) for p, k in enumerate(keys)], "k int, p int").repartition(7, "k")
              .select("p", F.spark_partition_id().alias("pid")).collect())
    assert all(r.p == r.pid for r in placed)
