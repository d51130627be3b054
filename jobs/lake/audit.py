"""Row accounting in `ingest_audit`: the one builder of audit rows, their balance check, and the table write.

Every audit row must satisfy input_rows = output_rows + quarantined_rows + removed_rows, and the
per-reason and per-rule breakdowns must sum to their totals. A stage checks its row with
`check_balance` before writing it, so an imbalance fails the run instead of landing in the table.
"""
from __future__ import annotations

import json


class AccountingError(RuntimeError):
    """A stage's rows do not balance: some were lost or counted twice."""


def check_balance(row: dict) -> dict:
    """Raises AccountingError unless `row` (an ingest_audit row) balances; returns it unchanged."""
    where = f"{row.get('stage', '?')}/{row.get('source', '?')} (run {row.get('run_id', '?')})"
    n_in, n_out = int(row["input_rows"]), int(row["output_rows"])
    n_q, n_rm = int(row["quarantined_rows"]), int(row["removed_rows"])
    if min(n_in, n_out, n_q, n_rm) < 0:
        raise AccountingError(f"{where}: negative count in {_counts(row)}")
    if n_in != n_out + n_q + n_rm:
        diff = n_in - (n_out + n_q + n_rm)
        what = "lost without a reason" if diff > 0 else "counted twice"
        raise AccountingError(f"{where}: input_rows {n_in} != output_rows {n_out} + quarantined_rows {n_q} "
                              f"+ removed_rows {n_rm}; {abs(diff)} row(s) {what}")
    for total, breakdown in (("quarantined_rows", "by_reason"), ("removed_rows", "by_rule")):
        parts = json.loads(row[breakdown])
        if sum(parts.values()) != int(row[total]):
            raise AccountingError(f"{where}: {breakdown} {parts} sums to {sum(parts.values())}, "
                                  f"but {total} is {row[total]}")
    return row


def audit_row(*, run_id: str, dataset: str, stage: str, source: str, scope: str, input_rows: int,
              output_rows: int, by_reason: dict[str, int], by_rule: dict[str, int], audited_at) -> dict:
    """One ingest_audit row, balance-checked: the totals are the breakdowns' sums."""
    row = {"run_id": run_id, "dataset": dataset, "stage": stage, "source": source, "scope": scope,
           "input_rows": int(input_rows), "output_rows": int(output_rows),
           "quarantined_rows": sum(by_reason.values()), "removed_rows": sum(by_rule.values()),
           "by_reason": json.dumps(dict(sorted(by_reason.items()))),
           "by_rule": json.dumps(dict(sorted(by_rule.items()))), "audited_at": audited_at}
    return check_balance(row)


def write_audit(spark, settings, rows: list[dict]) -> int:
    """MERGEs the rows into ingest_audit on (run_id, stage, source); a rerun of the same run commits nothing."""
    from jobs.lake import delta_io
    from schemas import tables as S
    from schemas.spark import struct_type

    df = spark.createDataFrame(rows, schema=struct_type(S.INGEST_AUDIT))
    return delta_io.merge_upsert(spark, settings, S.INGEST_AUDIT, df, ("run_id", "stage", "source"),
                                 delete_missing=False)


def _counts(row: dict) -> dict:
    return {k: row[k] for k in ("input_rows", "output_rows", "quarantined_rows", "removed_rows")}
