"""`genrec generate`: a synthetic raw dataset at scale on Spark, deterministic by seed.

`generate(spark, cfg, seed, out)` writes, under `out`:
- `events/`: parquet in the raw contract (`schemas.tables.RAW_EVENTS`, every column a string),
  partitioned by `ingest_date`, the arrival date;
- `items/`: the matching catalogue, parquet in `schemas.tables.RAW_ITEMS`;
- `_manifest.json`: config, seed, sizes and the exact number of rows of every kind.
It writes a temporary sibling folder and renames it over `out`, so a rerun replaces `out` whole.

How it scales. `spark.range(users)` gives each user's parameters and sessions (about a sixth of the
events) with their start times and intent cells. The sessions are then hash-partitioned onto keys
chosen so that each of `plan.partitions` tasks receives a contiguous run of arrival dates (no
sampling pass; see `synthetic.partition_keys`), and only there exploded into rows and rendered to
strings, so just sessions cross the shuffle and each task writes one file per date it holds. There
is no join, UDF, pandas or driver-side loop over rows. Row counts by kind come from one
aggregation over the sessions, never over the rows.

Randomness. Every draw is `xxhash64(seed, stream, keys)` mapped to [0, 1) (`synthetic.hash_uniform`
is the reference), keyed by (user, session) or (user, event index), so the data is identical for
any partitioning or core count.

Row kinds (the manifest counts each exactly):
- clean: human events, `n_events` of them exactly. Consecutive events of a user are >= 41 s apart,
  a user-day holds < 200 of them, and a session and its near-duplicates end before midnight.
- late: clean events of a session that lands 1..max_late_days after its event date (a subset of clean).
- exact_duplicates: copies of a clean row, identical in every column (ingest_date included).
- near_duplicates: copies 1-10 s after a clean row (same user, item, type, session), never exact.
- malformed, one rule broken each: null_user_id, null_item_id, bad_event_time ("not-a-time"),
  event_time_out_of_window (year 1972 or 2196), unknown_event_type ("teleport"), bad_rating
  ("-3" on a "rate" event), and unknown_item ("X999..." ids, not in the catalogue).
- bot_events: every event of a bot user-day: 40-80 views/clicks/... of distinct items, 0-1 s apart
  (mostly 0), so the median gap is 0 s. Bot users have only bot days.
A human session carries at most one extra row of each kind, so no two extra rows are identical.
"""
from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from genrec_core.config import SyntheticConfig, to_dict
from genrec_core.data import synthetic as syn
from jobs.lake import files
from jobs.lake.clock import StepTimer
from schemas import tables as S

GENERATOR = "genrec-synthetic/2"
SOURCE = "synthetic"
# Codes of extra rows inside a session's row array; clean rows use their index 0..m-1 (m <= 80).
_EXTRA_CODE = 100
_CLEAN = -1
_KIND = {name: i for i, name in enumerate(syn.EXTRA_KINDS)}
# The per-row expressions are wide: whole-stage code over them compiles to Java methods past
# HotSpot's 8 KB JIT limit, which then run interpreted (measured 4x slower than without it).
WHOLE_STAGE = "spark.sql.codegen.wholeStage"


@dataclass(frozen=True)
class GenerateResult:
    events: Path
    items: Path
    manifest: dict


def generate(spark, cfg: SyntheticConfig, seed: int, out: Path,
             log: Optional[Callable[[str], None]] = None) -> GenerateResult:
    """Writes events/, items/ and _manifest.json under `out` (replacing it) and returns their paths."""
    log = log or (lambda _msg: None)
    out = Path(out)
    plan = syn.plan(cfg, seed)
    log(f"plan: {plan.n_users:,} users ({plan.n_bots:,} bots), {cfg.n_items:,} items, "
        f"{plan.n_events:,} clean events over {cfg.days} days from {cfg.start_date}, "
        f"{plan.partitions} tasks")
    out.parent.mkdir(parents=True, exist_ok=True)
    files.clear_leftovers(out)  # of a killed run
    tmp = files.temp_beside(out)
    try:
        with _sql_conf(spark, {WHOLE_STAGE: "false"}):
            counts = _write(spark, plan, tmp, log)
        manifest = _manifest(plan, counts)
        (tmp / "_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        files.replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return GenerateResult(events=out / "events", items=out / "items", manifest=manifest)


def _write(spark, plan: syn.Plan, tmp: Path, log) -> dict[str, int]:
    step = StepTimer("generate", log, spark)
    with step("count rows by kind"):
        counts = count_rows(spark, plan)
    with step(f"write {counts['raw_rows']:,} events"):
        events = events_frame(spark, plan)
        events.write.mode("overwrite").partitionBy("ingest_date").parquet(str(tmp / "events"))
    with step(f"write {plan.cfg.n_items:,} items"):
        items_frame(spark, plan).write.mode("overwrite").parquet(str(tmp / "items"))
    return counts


@contextmanager
def _sql_conf(spark, settings: dict[str, str]):
    """Session settings for the duration of the block, restored afterwards."""
    old = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def read_manifest(out: Path) -> dict:
    return json.loads((Path(out) / "_manifest.json").read_text())


def _manifest(plan: syn.Plan, counts: dict[str, int]) -> dict:
    cfg = plan.cfg
    by_reason = {k: counts[k] for k in (*syn.MALFORMED_KINDS, "unknown_item")}
    return {
        "generator": GENERATOR, "seed": plan.seed, "config": to_dict(cfg),
        "sizes": {"users": plan.n_users, "human_users": plan.n_humans, "bot_users": plan.n_bots,
                  "items": cfg.n_items, "days": cfg.days, "start_date": cfg.start_date,
                  "arrival_dates": len(plan.dates), "partitions": plan.partitions},
        "counts": {**counts, "items": cfg.n_items},
        # The same counts under the clean stage's names (schemas.tables.REASONS / REMOVAL_RULES).
        "by_reason": by_reason,
        "by_rule": {"exact_duplicate": counts["exact_duplicates"],
                    "near_duplicate": counts["near_duplicates"], "bot_user_day": counts["bot_events"]},
    }


# ---------------------------------------------------------------- column helpers


def _sql_literal(value) -> str:
    """Spark SQL text of a literal; tuples become (nested) arrays."""
    if isinstance(value, (tuple, list)):
        return "array(" + ", ".join(_sql_literal(v) for v in value) + ")"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}L"
    if isinstance(value, float):
        return f"{value!r}D"  # repr round-trips, so the constant is bit-identical to the driver's
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"no SQL literal for {value!r}")


class _Gen:
    """The plan plus two column factories: `u(stream, *keys)`, a uniform double in [0, 1) (the Spark
    twin of synthetic.hash_uniform), and `arr(values)`, a literal array built once per generate."""

    def __init__(self, plan: syn.Plan):
        self.plan, self.cfg = plan, plan.cfg
        self._arrays: dict = {}

    def u(self, stream: str, *keys):
        from pyspark.sql import functions as F

        h = F.xxhash64(F.lit(self.plan.seed).cast("long"), F.lit(syn.salt(stream)).cast("long"),
                       *[k.cast("long") for k in keys])
        return F.shiftrightunsigned(h, 11).cast("double") * F.lit(2.0 ** -53)

    def arr(self, values):
        key = tuple(tuple(v) if isinstance(v, list) else v for v in values)
        if key not in self._arrays:
            # One SQL literal instead of a py4j call per element; Spark folds it into a constant.
            from pyspark.sql import functions as F

            self._arrays[key] = F.expr(_sql_literal(key))
        return self._arrays[key]

    def at(self, values, index0):
        """values[index0] for a 0-based long column."""
        return _at(self.arr(values), index0)


def _at(array, index0):
    from pyspark.sql import functions as F

    return F.element_at(array, (index0 + 1).cast("int"))


def _floordiv(a, b):
    """Exact floor division of integer columns (b > 0), like Python's a // b."""
    from pyspark.sql import functions as F

    b = b if hasattr(b, "cast") else F.lit(b)
    return ((a - F.pmod(a, b)) / b).cast("long")


def _floor(x):
    from pyspark.sql import functions as F

    return F.floor(x).cast("long")


def _pad(number, width: int):
    from pyspark.sql import functions as F

    return F.lpad(number.cast("string"), width, "0")


def _range_or_empty(ok, first, last):
    """[first, last] where ok and first <= last, else an empty array. Exploding it drops the row
    without a Filter, which Spark would push below (and so duplicate) every column it depends on.
    (sequence() itself counts down when first > last.)"""
    from pyspark.sql import functions as F

    return F.when(ok & (first <= last), F.sequence(first.cast("long"), last.cast("long"))).otherwise(
        F.array().cast("array<bigint>"))


def zipf_rank_col(u, n, const, exponent: float):
    """Spark twin of synthetic.zipf_rank."""
    from pyspark.sql import functions as F

    if abs(exponent - 1.0) < 1e-9:
        x = F.exp(u * const)
    else:
        x = F.pow(F.lit(1.0) + u * const, F.lit(1.0 / (1.0 - exponent)))
    return F.greatest(F.lit(0).cast("long"), F.least(_floor(x) - 1, n.cast("long") - 1))


def alias_draw_col(g: _Gen, u1, u2, prob, alias):
    """Spark twin of synthetic.alias_draw over literal tables: an index into `prob`."""
    from pyspark.sql import functions as F

    i = F.least(_floor(u1 * len(prob)), F.lit(len(prob) - 1).cast("long"))
    return F.when(u2 < g.at(prob, i), i).otherwise(g.at(alias, i).cast("long"))


def _cell_draw(g: _Gen, u1, u2):
    """A cell drawn in proportion to its item count."""
    return g.at(g.plan.live_cells, alias_draw_col(g, u1, u2, g.plan.alias_prob, g.plan.alias_index))


def _pick(u, probs):
    """Index drawn from a small categorical distribution (a CASE over cumulative thresholds)."""
    from pyspark.sql import functions as F

    out, cum = None, 0.0
    for i, p in enumerate(probs[:-1]):
        cum += p
        out = F.when(u < cum, F.lit(i)) if out is None else out.when(u < cum, F.lit(i))
    last = F.lit(len(probs) - 1)
    return last if out is None else out.otherwise(last)


def _bit(mask, x: int):
    from pyspark.sql import functions as F

    return F.shiftright(mask, x).bitwiseAND(1) == 1


# ---------------------------------------------------------------- users and sessions


def _users(df, g: _Gen):
    """Adds per-user columns from the internal user index `r` (humans first, then bots): n_ev
    (clean events), sess_len, n_sess (sessions), span (days), first_day and phase (see
    synthetic.session_day)."""
    from pyspark.sql import functions as F

    cfg, nh, u = g.cfg, g.plan.n_humans, g.u
    extra = g.plan.n_events - cfg.min_events_per_user * nh
    r, bot = F.col("r"), F.col("r") >= nh

    def cum(rank):  # C(rank) of synthetic.activity_counts
        a, e = syn.ACTIVITY_ALPHA, syn.ACTIVITY_EPS
        x = rank.cast("double") / F.lit(float(max(nh, 1)))
        share = (F.lit(1.0 - e) * (F.lit(a) * F.pow(x, F.lit((a - 1.0) / a)) - F.lit(a - 1.0) * x)
                 + F.lit(e) * x)
        return F.when(rank >= nh, F.lit(extra)).otherwise(_floor(F.lit(float(extra)) * share))

    lo_len, hi_len = syn.SESSION_LENGTH
    n_ev = F.when(bot, F.lit(0).cast("long")).otherwise(cfg.min_events_per_user + cum(r + 1) - cum(r))
    df = df.select("*", bot.alias("bot"), n_ev.alias("n_ev"),
                   (lo_len + _floor(u("session_length", r) * (hi_len - lo_len + 1))).alias("sess_len"))
    n_ev, sess_len = F.col("n_ev"), F.col("sess_len")
    per_day = syn.MAX_HUMAN_EVENTS_PER_DAY
    human_span = F.least(F.lit(cfg.days).cast("long"), F.greatest(
        F.lit(1).cast("long"), F.round((0.2 + 0.8 * u("span", r)) * cfg.days).cast("long"),
        _floordiv(n_ev + per_day - 1, per_day)))
    lo_days, hi_days = syn.BOT_DAYS
    bot_days = F.least(F.lit(cfg.days).cast("long"), lo_days + _floor(u("bot_days", r) * (hi_days - lo_days + 1)))
    df = df.select("*", F.when(bot, bot_days).otherwise(_floordiv(n_ev + sess_len - 1, sess_len)).alias("n_sess"),
                   F.when(bot, F.lit(cfg.days).cast("long")).otherwise(human_span).alias("span"))
    span = F.col("span")
    first_day = F.when(bot, F.lit(0).cast("long")).otherwise(_floor(u("span_start", r) * (cfg.days - span + 1)))
    return df.select("*", first_day.alias("first_day"), _floor(u("phase", r) * span).alias("phase"))


def _sessions(df, g: _Gen):
    """Adds per-session columns from (r, j): m (events), base (the user's index of its first
    event), mask (bit x set: one extra row of EXTRA_KINDS[x]) and late (days after the event date)."""
    from pyspark.sql import functions as F

    cfg, u = g.cfg, g.u
    r, j, n, s, bot = F.col("r"), F.col("j"), F.col("n_ev"), F.col("n_sess"), F.col("bot")
    lo_k, hi_k = syn.BOT_EVENTS
    base = _floordiv(j * n, s)
    df = df.select("*", F.when(bot, F.lit(0).cast("long")).otherwise(base).alias("base"),
                   F.when(bot, lo_k + _floor(u("bot_events", r, j) * (hi_k - lo_k + 1)))
                   .otherwise(_floordiv((j + 1) * n, s) - base).alias("m"))
    bits = [F.when(u(f"extra.{kind}", r, j) < F.least(F.lit(1.0), F.col("m") * g.plan.extra_rate(kind)),
                   F.lit(1 << x)).otherwise(F.lit(0)) for x, kind in enumerate(syn.EXTRA_KINDS)]
    late = F.when(u("late", r, j) < cfg.late_rate,
                  1 + _floor(u("late_days", r, j) * max(cfg.max_late_days, 1))).otherwise(F.lit(0).cast("long"))
    return df.select("*", F.when(bot, F.lit(0)).otherwise(sum(bits[1:], bits[0])).alias("mask"),
                     F.when(bot, F.lit(0).cast("long")).otherwise(late).alias("late"))


def _all_sessions(spark, g: _Gen):
    """Every session, users-major: (r, j) with the user and session columns, its event day d and
    arrival day d + late."""
    from pyspark.sql import functions as F

    plan = g.plan
    parts = max(4, math.ceil(plan.n_users / 200_000))
    users = _users(spark.range(0, plan.n_users, 1, parts).withColumnRenamed("id", "r"), g)
    s = F.col("n_sess")
    sessions = _sessions(users.withColumn("j", F.explode(_range_or_empty(s > 0, F.lit(0), s - 1))), g)
    return _with_day(sessions)


def _with_day(df):
    """d: the session's day index, first_day + synthetic.session_day."""
    from pyspark.sql import functions as F

    offset = _floordiv(F.col("j") * F.col("span") + F.col("phase"), F.col("n_sess"))
    return df.withColumn("d", F.col("first_day") + offset)


def count_rows(spark, plan: syn.Plan) -> dict[str, int]:
    """Exact rows of every kind, from one aggregation over all sessions (no events are built)."""
    from pyspark.sql import functions as F

    sessions = _all_sessions(spark, _Gen(plan))
    m, human = F.col("m"), ~F.col("bot")
    aggs = [F.sum(F.when(human, m).otherwise(0)).alias("clean_events"),
            F.sum(F.when(human & (F.col("late") > 0), m).otherwise(0)).alias("late_events"),
            F.sum(F.when(F.col("bot"), m).otherwise(0)).alias("bot_events")]
    aggs += [F.sum(F.when(_bit(F.col("mask"), x), 1).otherwise(0)).alias(kind)
             for x, kind in enumerate(syn.EXTRA_KINDS)]
    counts = {k: int(v or 0) for k, v in sessions.agg(*aggs).first().asDict().items()}
    if counts["clean_events"] != plan.n_events:  # the activity profile telescopes to n_events
        raise RuntimeError(f"generator bug: {counts['clean_events']} clean events, planned {plan.n_events}")
    counts["exact_duplicates"] = counts.pop("exact_duplicate")
    counts["near_duplicates"] = counts.pop("near_duplicate")
    counts["raw_rows"] = (counts["clean_events"] + counts["bot_events"] + counts["exact_duplicates"]
                          + counts["near_duplicates"] + sum(counts[k] for k in syn.MALFORMED_KINDS)
                          + counts["unknown_item"])
    order = ("raw_rows", "clean_events", "late_events", "exact_duplicates", "near_duplicates", "bot_events",
             *syn.MALFORMED_KINDS, "unknown_item")
    return {k: counts[k] for k in order}


# ---------------------------------------------------------------- events


def events_frame(spark, plan: syn.Plan):
    """All raw event rows (RAW_EVENTS columns, ingest_date last).

    Sessions are made and laid out users-major, then moved to the task of their arrival date:
    plan.partitions tasks, each holding a contiguous run of arrival dates, so each writes one file
    per date it holds. Rows are exploded only after the move, so just sessions cross the shuffle."""
    from pyspark.sql import functions as F

    g = _Gen(plan)
    sessions = _session_layout(_all_sessions(spark, g), g)
    buckets, parts = plan.buckets_per_day, plan.partitions
    slot = (F.col("d") + F.col("late")) * buckets + F.pmod(F.xxhash64(F.col("r"), F.col("j")), F.lit(buckets))
    task = _floordiv(slot * parts, plan.arrival_days * buckets)
    keep = ("r", "j", "d", "late", "bot", "m", "base", "mask", "step", "start", "cell", "explore", "pace",
            "bot_item")
    spread = (sessions.select(*keep, g.at(plan.partition_keys, task).cast("int").alias("key"))
              .repartition(parts, "key").drop("key"))
    return _render(_events(_rows(spread, g), g), g)


def _session_layout(df, g: _Gen):
    """When each session starts (seconds into its day) and, for humans, its spacing and cell."""
    from pyspark.sql import functions as F

    u = g.u
    r, j, m, s, bot = F.col("r"), F.col("j"), F.col("m"), F.col("n_sess"), F.col("bot")
    lo_step, hi_step = syn.STEP_SECONDS
    margin = syn.SLOT_MARGIN
    # A day's sessions take distinct slots: at most ceil(n_sess / span) of them share a day.
    slots = _floordiv(s + F.col("span") - 1, F.col("span"))
    df = df.select("*", slots.alias("slots"))
    df = df.select("*", _floordiv(F.lit(syn.SECONDS_PER_DAY), F.col("slots")).alias("slot_width"))
    width = F.col("slot_width")
    preferred = lo_step + _floor(u("step", r) * (hi_step - lo_step + 1))
    step = F.least(preferred, _floordiv(width - margin, F.col("sess_len")))  # a session fits its slot
    df = df.select("*", step.alias("step"))
    human_start = F.pmod(j, F.col("slots")) * width + _floor(
        u("session_start", r, j) * (width - m * F.col("step") - margin + 1))
    bot_start = _floor(u("bot_start", r, j) * (syn.SECONDS_PER_DAY - m))
    fav1 = _cell_draw(g, u("fav1", r), u("fav1.alias", r))
    fav2 = F.when(u("one_favourite", r) < 0.5, fav1).otherwise(_cell_draw(g, u("fav2", r), u("fav2.alias", r)))
    drifted = _cell_draw(g, u("drift", r), u("drift.alias", r))
    # Taste drift: the first favourite gives way to another cell as the user's sessions go by.
    drift = (0.3 + 0.5 * u("drift_rate", r)) * j.cast("double") / s.cast("double")
    cell = (F.when(u("pick", r, j) < 0.55 + 0.3 * u("favourite_share", r),
                   F.when(u("drift_pick", r, j) < drift, drifted).otherwise(fav1))
            .otherwise(fav2))
    return df.select(
        "*", F.when(bot, bot_start).otherwise(human_start).alias("start"),
        F.when(~bot, cell).alias("cell"),
        F.when(~bot, 0.05 + 0.2 * u("explore_rate", r)).alias("explore"),
        F.when(bot, 0.2 + 0.25 * u("bot_pace", r, j)).alias("pace"),  # bot seconds per event, < 0.5
        F.when(bot, _floor(u("bot_item", r, j) * g.cfg.n_items)).alias("bot_item"))


def _rows(df, g: _Gen):
    """One row per emitted event: code < m is clean event `i`; an extra row copies a random one."""
    from pyspark.sql import functions as F

    empty = F.array().cast("array<bigint>")
    extras = [F.when(_bit(F.col("mask"), x), F.array(F.lit(_EXTRA_CODE + x).cast("long"))).otherwise(empty)
              for x in range(len(syn.EXTRA_KINDS))]
    codes = F.flatten(F.array(F.sequence(F.lit(0).cast("long"), F.col("m") - 1), *extras))
    df = df.withColumn("code", F.explode(codes))
    code = F.col("code")
    df = df.select("*", F.when(code < _EXTRA_CODE, F.lit(_CLEAN).cast("long"))
                   .otherwise(code - _EXTRA_CODE).alias("kind"))
    source = _floor(g.u("extra_source", F.col("r"), F.col("j"), F.col("kind")) * F.col("m"))
    df = df.select("*", F.when(F.col("kind") == _CLEAN, code).otherwise(source).alias("i"))
    return df.select("*", (F.col("base") + F.col("i")).alias("e"))


def _events(df, g: _Gen):
    """Second of day, internal item, event type and rating of each row's (source) event."""
    from pyspark.sql import functions as F

    cfg, u = g.cfg, g.u
    r, e, i, step, bot = F.col("r"), F.col("e"), F.col("i"), F.col("step"), F.col("bot")
    jitter = _floor(u("jitter", r, e) * (step - syn.MIN_GAP_SECONDS + 1))  # gaps stay >= MIN_GAP
    human_tod = F.col("start") + i * step + jitter
    bot_tod = F.col("start") + _floor(i.cast("double") * F.col("pace"))
    explored = _cell_draw(g, u("explore.cell", r, e), u("explore.alias", r, e))
    cell = F.when(u("explore", r, e) < F.col("explore"), explored).otherwise(F.col("cell"))
    df = df.select("*", F.when(~bot, cell).alias("c"))
    c = F.col("c")
    size, ur = g.at(g.plan.cell_size, c), u("rank", r, e)
    rank = F.when(u("uniform_item", r, e) < syn.UNIFORM_ITEM_SHARE, _floor(ur * size)).otherwise(
        zipf_rank_col(ur, size, g.at(g.plan.cell_zipf, c), cfg.zipf_exponent))
    # Bots walk the catalogue: distinct (item, type) pairs within a bot day.
    bot_item = F.pmod(F.col("bot_item") + i, F.lit(cfg.n_items))
    bot_type = F.pmod(_floordiv(i, cfg.n_items), F.lit(len(syn.BOT_EVENT_TYPES)))
    return df.select(
        "*", F.when(bot, bot_tod).otherwise(human_tod).alias("tod"),
        F.when(bot, bot_item).otherwise(g.at(g.plan.cell_start, c) + rank).alias("x"),
        F.when(bot, bot_type).otherwise(_pick(u("event_type", r, e), syn.EVENT_PROBS)).alias("t"),
        _pick(u("rating", r, e), syn.RATING_PROBS).alias("rt"))


def _clock(date_col, tod):
    """'YYYY-MM-DDTHH:MM:SS' from a date string and seconds into that day (no time zone involved)."""
    from pyspark.sql import functions as F

    return F.concat(date_col, F.lit("T"), _pad(_floordiv(tod, 3600), 2), F.lit(":"),
                    _pad(F.pmod(_floordiv(tod, 60), F.lit(60)), 2), F.lit(":"), _pad(F.pmod(tod, F.lit(60)), 2))


def _render(df, g: _Gen):
    """The raw strings, with each extra row's one deliberate defect."""
    from pyspark.sql import functions as F

    plan, cfg, u = g.plan, g.cfg, g.u
    r, e, kind = F.col("r"), F.col("e"), F.col("kind")
    umult, uadd = plan.user_perm
    imult, iadd = plan.item_perm
    user_no = _pad(F.pmod(r * umult + uadd, F.lit(plan.n_users)) + 1, plan.user_width)
    item = F.concat(F.lit("I"), _pad(F.pmod(F.col("x") * imult + iadd, F.lit(cfg.n_items)) + 1, plan.item_width))
    unknown = F.concat(F.lit(syn.UNKNOWN_ITEM_PREFIX),
                       _pad(_floor(u("unknown_item", r, e) * plan.unknown_pool), plan.unknown_width))
    etype = g.at(syn.EVENT_TYPES, F.col("t"))
    rating = F.when(F.col("t") == syn.EVENT_TYPES.index("rate"), g.at(syn.RATINGS, F.col("rt")))
    day = g.at(plan.dates, F.col("d"))
    clock = _clock(day, F.col("tod"))
    near = _clock(day, F.col("tod") + 1 + _floor(u("near_offset", r, e) * syn.NEAR_DUPLICATE_MAX_OFFSET))
    year = F.when(u("out_of_window", r, e) < 0.5, F.lit(syn.OUT_OF_WINDOW_YEARS[0])).otherwise(
        F.lit(syn.OUT_OF_WINDOW_YEARS[1]))

    def when_kind(name, value, otherwise):
        return F.when(kind == _KIND[name], value).otherwise(otherwise)

    null = F.lit(None).cast("string")
    columns = {
        "user_id": when_kind("null_user_id", null, F.concat(F.lit("U"), user_no)),
        "item_id": when_kind("null_item_id", null, when_kind("unknown_item", unknown, item)),
        "event_type": when_kind("unknown_event_type", F.lit(syn.BAD_TYPE),
                                when_kind("bad_rating", F.lit("rate"), etype)),
        "event_time": when_kind("bad_event_time", F.lit(syn.BAD_TIME),
                                when_kind("event_time_out_of_window", F.concat(year, F.substring(clock, 5, 15)),
                                          when_kind("near_duplicate", near, clock))),
        "session_id": F.concat(F.lit("S"), user_no, F.lit("-"), F.col("j").cast("string")),
        "rating": when_kind("bad_rating", F.lit(syn.BAD_RATING), rating),
        "source": F.lit(SOURCE),
        "malformed": null,
        "ingest_date": g.at(plan.dates, F.col("d") + F.col("late")),
    }
    return df.select(*[columns[c].alias(c) for c in S.RAW_EVENTS.column_names])


# ---------------------------------------------------------------- catalogue


def items_frame(spark, plan: syn.Plan):
    """The catalogue (RAW_ITEMS columns): one row per item, cell by cell."""
    from pyspark.sql import functions as F

    g = _Gen(plan)
    u, cfg, cells = g.u, plan.cfg, plan.cells
    parts = max(1, min(len(plan.live_cells), math.ceil(cfg.n_items / 1_000_000)))
    c = F.col("c")
    start, size = g.at(plan.cell_start, c).cast("long"), g.at(plan.cell_size, c)
    df = spark.range(0, len(cells), 1, parts).withColumnRenamed("id", "c")
    df = df.withColumn("x", F.explode(_range_or_empty(size > 0, start, start + size - 1)))
    x = F.col("x")

    def choose(stream, lists):  # one entry of this cell's list
        options = g.at(lists, c)
        return _at(options, _floor(u(stream, x) * F.size(options)))

    nouns = [cl.nouns for cl in cells]
    noun_i = _floor(u("noun", x) * F.size(g.at(nouns, c)))
    df = df.select("*", _at(g.at(nouns, c), noun_i).alias("noun"),
                   _at(g.at([cl.leaves for cl in cells], c), noun_i).alias("leaf"),
                   choose("adjective", [cl.adjectives for cl in cells]).alias("adjective"),
                   _brand(g, x, g.at([cl.top for cl in cells], c)).alias("brand"))
    noun, adjective, brand = F.col("noun"), F.col("adjective"), F.col("brand")
    maker = F.when(brand.isNotNull(), F.concat(F.lit(" from "), brand)).otherwise(F.lit(""))
    described = F.concat(F.upper(F.substring(adjective, 1, 1)), F.substring(adjective, 2, 1000), F.lit(" "),
                         noun, maker, F.lit(". "), choose("phrase", [cl.phrases for cl in cells]))
    imult, iadd = plan.item_perm
    unit = choose("unit", [cl.units for cl in cells])
    columns = {
        "item_id": F.concat(F.lit("I"), _pad(F.pmod(x * imult + iadd, F.lit(cfg.n_items)) + 1, plan.item_width)),
        "title": F.concat_ws(" ", brand, adjective, noun, F.nullif(unit, F.lit(""))),
        "brand": brand,
        "categories": F.concat(g.at([cl.path for cl in cells], c), F.lit(" > "), F.col("leaf")),
        "price": _price(g, x, c),
        "description": F.when(u("no_description", x) >= syn.NULL_DESCRIPTION_SHARE, described),
        "attributes": _attributes(g, x, c),
        "malformed": F.lit(None),
    }
    return df.select(*[columns[name].cast("string").alias(name) for name in S.RAW_ITEMS.column_names])


def _brand(g: _Gen, x, top):
    """Brands focus on a few tops; within a top, big brands carry many items (Zipf over its list)."""
    from pyspark.sql import functions as F

    plan = g.plan
    if not plan.brands:
        return F.lit(None).cast("string")
    members = g.at(plan.top_brands, top)
    const = g.at(tuple(syn.zipf_constant(len(m), 1.0) for m in plan.top_brands), top)
    b = _at(members, zipf_rank_col(g.u("brand", x), F.size(members), const, 1.0))
    return F.when(g.u("no_brand", x) >= syn.NULL_BRAND_SHARE, g.at(plan.brands, b))


def _price(g: _Gen, x, c):
    """Log-normal per cell, with .99 endings like shelf prices; a few missing."""
    from pyspark.sql import functions as F

    u = g.u
    z = F.sqrt(F.lit(-2.0) * F.log(F.lit(1.0) - u("price", x))) * F.cos(F.lit(2 * math.pi) * u("price.angle", x))
    raw = F.exp(g.at(g.plan.cell_log_price, c) + g.at(tuple(cl.sigma for cl in g.plan.cells), c) * z)
    price = F.greatest(F.round(raw) - 0.01, F.lit(0.99)).cast("decimal(12,2)")
    return F.when(u("no_price", x) >= syn.NULL_PRICE_SHARE, price)


def _attributes(g: _Gen, x, c):
    """A small JSON object, e.g. {"color": "black", "warranty_years": "2"}; sometimes missing."""
    from pyspark.sql import functions as F

    cells, u = g.plan.cells, g.u

    def pair(n: int, stream: str):
        values = g.at([cl.attributes[n][1] for cl in cells], c)
        value = _at(values, _floor(u(stream, x) * F.size(values)))
        key = g.at([cl.attributes[n][0] for cl in cells], c)
        return F.concat(F.lit('"'), key, F.lit('": "'), value, F.lit('"'))

    second = F.when(u("attributes.second", x) < 0.5, F.concat(F.lit(", "), pair(1, "attributes.value2")))
    body = F.concat(F.lit("{"), pair(0, "attributes.value1"), F.coalesce(second, F.lit("")), F.lit("}"))
    return F.when(u("no_attributes", x) >= syn.NULL_ATTRIBUTES_SHARE, body)


# ---------------------------------------------------------------- progress

