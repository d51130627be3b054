"""The sequences stage: k-core, time-ordered user sequences and their split, rebuilt in full on Spark.

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
input_rows = output_rows + removed_rows is checked (`jobs.lake.audit.audit_row`) and the run
fails before writing the audit row if it does not hold.

Cost: a full rebuild each run, because neither the k-core nor the split is local to a day: one new
event can lift a user or item to k and bring back rows of others, and it moves its user's targets.
One run reads all of interactions_clean, then
- k-core: per iteration, two partial aggregations (user and item degrees) over the surviving rows,
  which shuffle one row per key and task, and anti joins against the keys below k, broadcast up
  to 1M keys (no row shuffle) and shuffled above; see `jobs.transforms.kcore_filter`. Iterations stay few (each one
  can only lower degrees) and later ones touch a shrinking set of keys;
- one shuffle of the surviving rows by user_id with a sort within user (the ordering window), which
  the per-user aggregation reuses;
- a full overwrite of user_sequences: at most 3 rows per user of at most max_len ids.
So a run costs about 3 + 2·iterations scans (the k-core's over a shrinking set) and one shuffle of
the interactions, plus the surviving rows' columns held once in executor memory/disk (checkpoint).
"""
from __future__ import annotations

from genrec_core.data import kcore as K
from genrec_core.fingerprint import fingerprint
from jobs.lake import delta_io
from jobs.lake.audit import audit_row, write_audit
from jobs.stages.context import RunContext
from jobs.transforms.kcore_filter import kcore
from jobs.transforms.sequence_split import label_events, output_events, sequence_rows
from schemas import tables as S


def main(ctx: RunContext) -> dict:
    from pyspark.sql import functions as F

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
    row = audit_row(run_id=run_id, dataset=cfg.data.dataset, stage="sequences", source="events", scope="all",
                    input_rows=stats.input_rows, output_rows=output_events(written), by_reason={},
                    by_rule=by_rule, audited_at=ctx.logical_time)
    audit_version = write_audit(spark, settings, [row])
    rows_by_split = {r["split"]: int(r["count"]) for r in written.groupBy("split").count().collect()}
    return {"versions": {"user_sequences": version, "ingest_audit": audit_version,
                         "interactions_clean": clean_version},
            "rows_by_split": rows_by_split, "kcore": {"k": stats.k, "iterations": stats.iterations,
                                                      "removed_rows": stats.removed_rows},
            "audit": [row]}
