"""Iterative k-core over users and items on Spark, run to convergence with a bounded iteration count.

Same semantics as the reference `genrec_core.data.kcore.kcore_reference` (degrees count rows; all
rows of a user or item below k go in the same iteration; `iterations` counts the iterations that
dropped rows), which the integration tests hold it to.

One iteration:
1. Degrees: a count grouped by user and by item (grouping sets, one scan). Partial (map-side)
   aggregation shuffles one row per key and task, not the interactions, so a hot item or user
   costs no skew.
2. The keys below k (bad users, bad items) are materialised and counted. None: converged, and the
   rows are not touched again.
3. Rows whose user or item is bad are dropped with left-anti joins against those key sets (an
   absent set skips its join). A set of at most `broadcast_max_keys` keys is broadcast, so the
   interactions are not shuffled; a larger one (typically the long tail in the first iteration)
   uses a shuffle join, where AQE's skew-join handling splits hot-item partitions of the row side.
4. The surviving rows are `localCheckpoint`ed, which cuts the lineage (an iteration's plan would
   otherwise embed all earlier ones) and keeps them for the next iteration's scans; the previous
   iteration's blocks are freed when their DataFrame is garbage-collected (Spark's ContextCleaner).

Only counts reach the driver; no interaction row is collected.
"""
from __future__ import annotations

from dataclasses import dataclass


class KCoreNotConverged(RuntimeError):
    """The k-core did not converge within max_iterations."""


@dataclass(frozen=True)
class KCoreStats:
    k: int
    iterations: int  # iterations that removed rows; 0 if the input already was a k-core
    input_rows: int
    output_rows: int
    converged: bool

    @property
    def removed_rows(self) -> int:
        return self.input_rows - self.output_rows


def kcore(df, k: int, max_iterations: int, user_col: str = "user_id", item_col: str = "item_id",
          broadcast_max_keys: int = 1_000_000):
    """-> (rows of df in its k-core, KCoreStats). Raises KCoreNotConverged past max_iterations.

    k <= 1 keeps everything (every present user and item has a row) and returns df unchanged."""
    n_in = df.count()
    if k <= 1:
        return df, KCoreStats(k, 0, n_in, n_in, True)
    cur, n = df, n_in
    for it in range(max_iterations + 1):
        bad_users, bad_items = _below_k(cur, user_col, item_col, k)
        if bad_users is None and bad_items is None:
            return cur, KCoreStats(k, it, n_in, n, True)
        kept = _drop(_drop(cur, bad_users, user_col, broadcast_max_keys), bad_items, item_col,
                     broadcast_max_keys)
        # Lazy: the count below materialises the checkpoint in the same job.
        kept = kept.localCheckpoint(eager=False)
        n_kept = kept.count()
        if it == max_iterations:
            raise KCoreNotConverged(
                f"k-core (k={k}) did not converge within {max_iterations} iterations: {n} of {n_in} rows "
                f"are left and {n - n_kept} of them still belong to a user or item with fewer than {k} "
                f"rows. Raise the bound (--set clean.kcore_max_iterations={2 * max_iterations}) or "
                f"lower clean.kcore.")
        cur, n = kept, n_kept
    raise AssertionError("unreachable")


def _below_k(df, user_col: str, item_col: str, k: int):
    """(users, n_users), (items, n_items): the keys with fewer than k rows, materialised, or None
    for a side without any. Both degrees come from one job (grouping sets over one scan)."""
    from pyspark.sql import functions as F

    bad = (df.groupingSets([[user_col], [item_col]], user_col, item_col)
           .agg(F.grouping_id().alias("_g"), F.count(F.lit(1)).alias("_n"))
           .where(F.col("_n") < k).select("_g", user_col, item_col)
           .localCheckpoint(eager=False))
    # grouping_id sets a bit per column aggregated away: 1 = grouped by user, 2 = by item.
    sizes = {int(r["_g"]): int(r["count"]) for r in bad.groupBy("_g").count().collect()}
    side = lambda g, col: (bad.where(F.col("_g") == g).select(col), sizes[g]) if sizes.get(g) else None  # noqa: E731
    return side(1, user_col), side(2, item_col)

def _drop(df, bad, col: str, broadcast_max_keys: int):
    from pyspark.sql import functions as F

    if bad is None:
        return df
    keys, n_keys = bad
    return df.join(F.broadcast(keys) if n_keys <= broadcast_max_keys else keys, on=col, how="left_anti")
