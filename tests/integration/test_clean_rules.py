"""Each cleaning rule on hand-made raw rows: the reason or rule it assigns, and that every row gets
exactly one fate. Plans show the broadcast catalogue join and the single shuffle for the rules."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from genrec_core.config import CleanConfig
from schemas import tables as S

pytestmark = pytest.mark.integration

CFG = CleanConfig(bot_max_events_per_day=50, bot_min_events_for_gap=20, near_duplicate_seconds=30)
DAY = "2026-03-01"


def ev(user="u1", item="I1", etype="view", time="2026-03-01T10:00:00", rating=None, session=None,
       malformed=None, ingest_date=DAY):
    return (user, item, etype, time, session, rating, "test", malformed, ingest_date)


def at(seconds: float) -> str:
    return (datetime(2026, 3, 1, 8) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def classify(spark, rows, cfg=CFG, daily=False, items=("I1", "I2", "I3")):
    from jobs.transforms import cleaning as C

    raw = spark.createDataFrame(rows, schema=", ".join(f"{c} string" for c in S.RAW_EVENTS.column_names))
    catalogue = spark.createDataFrame([(i,) for i in items], "item_id string")
    df = C.mark_removals(C.mark_unknown_items(C.parse_events(raw, cfg, daily), catalogue, len(items)), cfg)
    return df


def fates(df) -> list[tuple]:
    return sorted((r["user_id"], r["event_time"], r["reason"], r["rule"])
                  for r in df.select("user_id", "event_time", "reason", "rule").collect())


@pytest.mark.parametrize("row,reason", [
    (ev(malformed="u1,I1"), "malformed_row"),
    (ev(user="u\ufffd1"), "undecodable_text"),
    (ev(user="  "), "null_user_id"),
    (ev(item=None), "null_item_id"),
    (ev(time="yesterday"), "bad_event_time"),
    (ev(time="1969-07-20T20:17:00"), "event_time_out_of_window"),
    (ev(time="2199-01-01T00:00:00"), "event_time_out_of_window"),
    (ev(etype="teleport"), "unknown_event_type"),
    (ev(etype=None), "unknown_event_type"),
    (ev(etype="rate", rating="-3"), "bad_rating"),
    (ev(etype="rate", rating="five"), "bad_rating"),
    (ev(item="X999"), "unknown_item"),
])
def test_quarantine_reason(spark, row, reason):
    got = classify(spark, [row, ev(user="ok")]).select("user_id", "reason", "rule").collect()
    by_user = {r["user_id"]: (r["reason"], r["rule"]) for r in got}
    assert by_user["ok"] == (None, None)
    assert [v for k, v in by_user.items() if k != "ok"] == [(reason, None)]


def test_epoch_seconds_and_case_are_accepted(spark):
    rows = [ev(time="1772359200", etype=" VIEW "), ev(user="u2", etype="rate", rating="4.5")]
    assert all(r["reason"] is None for r in classify(spark, rows).collect())


def test_exact_duplicates_keep_the_earliest_arrival(spark):
    rows = [ev(ingest_date="2026-03-02"), ev(), ev(), ev(item="I2")]
    df = classify(spark, rows)
    kept = df.where("reason IS NULL AND rule IS NULL").select("item_id", "ingest_date").collect()
    assert sorted((r[0], r[1].isoformat()) for r in kept) == [("I1", DAY), ("I2", DAY)]
    assert df.where("rule = 'exact_duplicate'").count() == 2


def test_near_duplicates_collapse_within_the_window(spark):
    rows = [ev(time=at(0)), ev(time=at(10)), ev(time=at(35)), ev(time=at(100)),
            ev(time=at(105), etype="click"), ev(time=at(106), item="I2")]
    df = classify(spark, rows)
    near = sorted(r["event_time"] for r in df.where("rule = 'near_duplicate'").collect())
    # 10 s after 0 and 35 s after 10 (chained) collapse; 100 is 65 s later; other type/item are apart.
    assert [t.strftime("%H:%M:%S") for t in near] == ["08:00:10", "08:00:35"]


def test_bot_days_by_volume_and_by_speed(spark):
    volume = [ev(user="vol", item="I1", time=at(60 * i)) for i in range(51)]
    fast = [ev(user="fast", item=f"I{1 + i % 3}", time=at(i * 0.5 // 1)) for i in range(25)]
    human = [ev(user="human", item=f"I{1 + i % 3}", time=at(120 * i)) for i in range(30)]
    df = classify(spark, volume + fast + human)
    rules = {r["user_id"]: r["rules"] for r in
             df.groupBy("user_id").agg({"rule": "collect_set"}).withColumnRenamed("collect_set(rule)", "rules").collect()}
    assert rules["vol"] == ["bot_user_day"]
    assert set(rules["fast"]) <= {"bot_user_day", "exact_duplicate"} and "bot_user_day" in rules["fast"]
    assert rules["human"] == []


def test_bot_volume_counts_every_attributable_row(spark):
    # 30 valid rows and 25 of an unknown type: 55 rows of traffic that day, over the cap of 50; the
    # valid ones go as a bot's, the others keep their quarantine reason. Malformed rows carry no user.
    rows = ([ev(user="mixed", time=at(60 * i)) for i in range(30)]
            + [ev(user="mixed", etype="teleport", time=at(60 * i + 1)) for i in range(25)]
            + [ev(user="junk", time=at(60 * i)) for i in range(30)]
            + [ev(user="junk", malformed="x", time=at(60 * i + 1)) for i in range(25)])
    got = {(r["user_id"], r["reason"], r["rule"]): r["n"] for r in
           classify(spark, rows).groupBy("user_id", "reason", "rule").count().withColumnRenamed("count", "n").collect()}
    assert got == {("mixed", None, "bot_user_day"): 30, ("mixed", "unknown_event_type", None): 25,
                   ("junk", None, None): 30, ("junk", "malformed_row", None): 25}


def test_daily_mode_quarantines_late_and_early_arrivals(spark):
    cfg = CleanConfig(max_late_days=2)
    rows = [ev(user="on_time"), ev(user="late", time="2026-02-27T10:00:00"),
            ev(user="too_late", time="2026-02-20T10:00:00"), ev(user="future", time="2026-03-05T10:00:00")]
    got = {r["user_id"]: r["reason"] for r in classify(spark, rows, cfg, daily=True).collect()}
    assert got == {"on_time": None, "late": None, "too_late": "late_beyond_window",
                   "future": "event_time_out_of_window"}
    full = {r["user_id"]: r["reason"] for r in classify(spark, rows, cfg, daily=False).collect()}
    assert set(full.values()) == {None}


def test_every_row_has_one_fate_and_scope(spark):
    rows = [ev(), ev(), ev(time="bad"), ev(item="X1"), ev(time=at(5)), ev(user="b", time=at(3))]
    df = classify(spark, rows)
    assert df.count() == len(rows)
    assert df.where("reason IS NOT NULL AND rule IS NOT NULL").count() == 0
    assert df.where("scope_date IS NULL").count() == 0


def test_plan_broadcasts_the_catalogue_and_shuffles_once_for_the_rules(spark):
    df = classify(spark, [ev(), ev(user="u2")])
    plan = df._jdf.queryExecution().executedPlan().toString()
    assert "BroadcastHashJoin" in plan
    lines = plan.splitlines()
    exchanges = [i for i, line in enumerate(lines) if "Exchange hashpartitioning" in line]
    # The one full shuffle is repartition(event_date, user_id, _salt), sorted once and handed to the
    # rules in Arrow batches; the only other exchanges feed partial aggregates (the bot-volume count).
    assert "MapInArrow" in plan and "Sort [event_date" in plan, plan
    assert sum("REPARTITION_BY_COL" in lines[i] for i in exchanges) == 1, plan
    assert all("REPARTITION_BY_COL" in lines[i] or "partial_" in lines[i + 1] for i in exchanges), plan
