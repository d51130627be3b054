"""Time-ordered user sequences and their split labels on Spark: the distributed form of `genrec_core.data.kcore`'s reference."""
from __future__ import annotations

from genrec_core.data import kcore as K


def label_events(events, split: str, max_len: int, cutoff: str = ""):
    """events: (user_id, item_id, event_time, event_id, ...) -> the same plus `pos` (1-based place in
    the user's time order) and `label` (a KEPT_LABELS value or a removal rule), as the reference
    `split_labels` assigns them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

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
