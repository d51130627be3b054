"""Stage b: k-core, time-ordered user sequences and their split, rebuilt in full on Spark.

Pipeline: interactions_clean (one pinned Delta version) -> k-core over users and items
(clean.kcore, 0 = off) -> each user's events ordered by (event_time, event_id), so ties never
depend on partitioning -> one label per event (`genrec_core.data.kcore` defines them: train /
valid / test, or a removal rule) -> user_sequences, one row per (user, split).

Accounting (one `ingest_audit` row, stage 'sequences', source 'events', scope 'all'): every row
of interactions_clean is exactly one of
- output: in a user's train history, or the valid or test target. Counted from the written table
  as sum(size(item_ids)) over 'train' rows + count('valid' rows) + count('test' rows). Valid and
  test histories repeat the train history (plus the valid target), so they are not counted again.
- removed, by rule: kcore, truncated (older than the most recent sequences.max_len),
  after_test_target and no_history (temporal split only).
input_rows = output_rows + removed_rows is checked (`jobs.accounting.check_balance`) and the run
fails before writing the audit row if it does not hold.

Cost: a full rebuild each run, because neither the k-core nor the split is local to a day: one new
event can lift a user or item to k and bring back rows of others, and it moves its user's targets.
One run reads all of interactions_clean, then
- k-core: per iteration, two partial aggregations (user and item degrees) over the surviving rows,
  which shuffle one row per key and task, and anti joins against the keys below k, broadcast up
  to 1M keys (no row shuffle) and shuffled above; see `jobs.kcore`. Iterations stay few (each one
  can only lower degrees) and later ones touch a shrinking set of keys;
- one shuffle of the surviving rows by user_id with a sort within user (the ordering window), which
  the per-user aggregation reuses;
- a full overwrite of user_sequences: at most 3 rows per user of at most max_len ids.
So a run costs about 3 + 2·iterations scans (the k-core's over a shrinking set) and one shuffle of
the interactions, plus the surviving rows' columns held once in executor memory/disk (checkpoint).
"""
from __future__ import annotations

import json

from genrec_core.data import kcore as K
from jobs import delta_io
from jobs.accounting import check_balance
from jobs.context import RunContext, fingerprint
from jobs.kcore import kcore
from schemas import tables as S


def label_events(events, split: str, max_len: int, cutoff: str = ""):
    """events: (user_id, item_id, event_time, event_id, ...) -> the same plus `pos` (1-based place in
    the user's time order) and `label` (a KEPT_LABELS value or a removal rule), as the reference
    `split_labels` assigns them."""
    from pyspark.sql import Window, functions as F

    by_user = Window.partitionBy("user_id")
    pos, n = F.col("pos"), F.col("n")
    df = (events.withColumn("pos", F.row_number().over(by_user.orderBy("event_time", "event_id")))
          .withColumn("n", F.count(F.lit(1)).over(by_user)))
    if split == "leave_one_out":
        m = F.least(n, F.lit(max_len))
        start = n - m  # positions up to here are truncated
        j = pos - start
        label = (F.when(pos <= start, K.TRUNCATED).when(m < 3, K.TRAIN)
                 .when(j == m, K.TEST).when(j == m - 1, K.VALID).otherwise(K.TRAIN))
    elif split == "temporal":
        pre = (F.col("event_time") < F.lit(cutoff).cast("timestamp")).cast("int")
        df = df.withColumn("n_pre", F.sum(pre).over(by_user))
        has_test = (n > F.col("n_pre")).cast("int")
        seq_len = F.col("n_pre") + has_test  # history, then the first event at or after the cut-off
        m = F.least(seq_len, F.lit(max_len))
        h = m - has_test  # history events kept
        start = seq_len - m
        j = pos - start
        label = (F.when(pos > seq_len, K.AFTER_TEST).when(pos <= start, K.TRUNCATED)
                 .when((has_test == 1) & (h == 0), K.NO_HISTORY)
                 .when((has_test == 1) & (j == m), K.TEST)
                 .when((h >= 2) & (j == h), K.VALID).otherwise(K.TRAIN))
    else:
        raise ValueError(f"split {split!r}: choose one of {K.SPLIT_KINDS}")
    return df.withColumn("label", label).drop("n", "n_pre")


def sequence_rows(labeled):
    """Labeled events -> user_sequences rows: train (train history), valid (train history, valid
    target), test (train history + valid target, test target). Users left with no kept event get
    no row."""
    from pyspark.sql import functions as F

    lab = F.col("label")
    per_user = (labeled.groupBy("user_id").agg(
        F.sort_array(F.collect_list(F.when(lab == K.TRAIN, F.struct("pos", "item_id")))).alias("tr"),
        F.max(F.when(lab == K.VALID, F.col("item_id"))).alias("valid"),
        F.max(F.when(lab == K.TEST, F.col("item_id"))).alias("test"))
        .where(F.size("tr") > 0)
        .withColumn("hist", F.col("tr.item_id")))
    train = per_user.select("user_id", F.lit(K.TRAIN).alias("split"), F.col("hist").alias("item_ids"),
                            F.lit(None).cast("string").alias("target"))
    valid = per_user.where(F.col("valid").isNotNull()).select(
        "user_id", F.lit(K.VALID).alias("split"), F.col("hist").alias("item_ids"), F.col("valid").alias("target"))
    test_hist = F.when(F.col("valid").isNotNull(), F.concat("hist", F.array("valid"))).otherwise(F.col("hist"))
    test = per_user.where(F.col("test").isNotNull()).select(
        "user_id", F.lit(K.TEST).alias("split"), test_hist.alias("item_ids"), F.col("test").alias("target"))
    return train.unionByName(valid).unionByName(test)


def output_events(seqs) -> int:
    """Events a user_sequences frame holds, each once: train history items + valid + test targets."""
    from pyspark.sql import functions as F

    split = F.col("split")
    row = seqs.agg(
        F.sum(F.when(split == K.TRAIN, F.size("item_ids")).otherwise(0)).alias("train"),
        F.sum(F.when(split != K.TRAIN, 1).otherwise(0)).alias("targets")).first()
    return int(row["train"] or 0) + int(row["targets"] or 0)


def audit_row(run_id: str, dataset: str, input_rows: int, output_rows: int, by_rule: dict[str, int],
              audited_at) -> dict:
    row = {"run_id": run_id, "dataset": dataset, "stage": "sequences", "source": "events", "scope": "all",
           "input_rows": input_rows, "output_rows": output_rows, "quarantined_rows": 0,
           "removed_rows": sum(by_rule.values()), "by_reason": "{}",
           "by_rule": json.dumps(by_rule, sort_keys=True), "audited_at": audited_at}
    return check_balance(row)


def main(ctx: RunContext) -> dict:
    from pyspark.sql import functions as F

    from schemas.spark import struct_type

    K.validate_sequence_config(ctx.config)
    spark, settings, cfg = ctx.spark, ctx.settings, ctx.config
    seq_cfg = cfg.sequences
    clean_version = delta_io.latest_version(spark, settings, S.INTERACTIONS_CLEAN)
    events = delta_io.read(spark, settings, S.INTERACTIONS_CLEAN, version=clean_version).select(
        "user_id", "item_id", "event_time", "event_id")
    kept, stats = kcore(events, cfg.clean.kcore, cfg.clean.kcore_max_iterations)
    labeled = label_events(kept, seq_cfg.split, seq_cfg.max_len, seq_cfg.temporal_cutoff).cache()
    try:
        by_label = {r["label"]: int(r["count"]) for r in labeled.groupBy("label").count().collect()}
        by_rule = {rule: by_label.get(rule, 0) for rule in K.SEQUENCE_RULES}
        by_rule[K.KCORE] = stats.removed_rows
        # Checked before the commit too: a label outside the known set means an event would vanish.
        unknown = set(by_label) - set(K.KEPT_LABELS) - set(K.SEQUENCE_RULES)
        if unknown:
            raise ValueError(f"events got unknown label(s) {sorted(unknown)}")
        version = delta_io.overwrite(spark, settings, S.USER_SEQUENCES, sequence_rows(labeled))
    finally:
        labeled.unpersist()
    written = delta_io.read(spark, settings, S.USER_SEQUENCES, version=version)
    # The run is identified by its input's content, not its Delta version: a clean rerun commits a new
    # version of the same rows, and must not add a second audit row for the same sequences.
    content = events.agg(F.count(F.lit(1)), F.bit_xor(F.xxhash64("event_id"))).first()
    run_id = fingerprint("sequences", cfg.data.dataset, cfg.clean.kcore, cfg.clean.kcore_max_iterations,
                         seq_cfg, tuple(content))
    row = audit_row(run_id, cfg.data.dataset, stats.input_rows, output_events(written), by_rule,
                    ctx.logical_time)
    audit_df = spark.createDataFrame([row], schema=struct_type(S.INGEST_AUDIT))
    audit_version = delta_io.merge_upsert(spark, settings, S.INGEST_AUDIT, audit_df, ("run_id", "stage", "source"),
                                          delete_missing=False)
    rows_by_split = {r["split"]: int(r["count"]) for r in written.groupBy("split").count().collect()}
    return {"versions": {"user_sequences": version, "ingest_audit": audit_version,
                         "interactions_clean": clean_version},
            "rows_by_split": rows_by_split, "kcore": {"k": stats.k, "iterations": stats.iterations,
                                                      "removed_rows": stats.removed_rows},
            "audit": [row]}
