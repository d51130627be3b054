"""The item path's one door to the driver: a collect that refuses more rows than the configured bound.

At 10⁸ items, a catalogue-sized collect is tens of GB in one process. The item path (embed, tokenize,
gate, publish, report) brings to the driver only what config bounds: the fit sample, new items to
place, codebooks and aggregates. Every such collect goes through `collect`, so a stage that would
gather more than `GENREC_DRIVER_ROWS` rows (Settings.driver_rows) stops with a message naming the
setting that bounds it, before it pulls anything.
"""
from __future__ import annotations


class DriverBoundExceeded(RuntimeError):
    """A stage would have collected more rows to the driver than GENREC_DRIVER_ROWS allows."""


def collect(df, what: str, bound: int, remedy: str):
    """df as pandas when it has at most `bound` rows; otherwise DriverBoundExceeded, naming `remedy`.

    Only bound + 1 rows are ever pulled, so the refusal itself costs no more than the bound."""
    pdf = df.limit(bound + 1).toPandas()
    if len(pdf) > bound:
        raise DriverBoundExceeded(
            f"{what}: more than {bound:,} rows would be collected to the driver, over GENREC_DRIVER_ROWS="
            f"{bound:,}. {remedy}")
    return pdf
