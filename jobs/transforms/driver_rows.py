"""The item path's one door to the driver: a collect that refuses more rows than the configured bound.

At 10⁸ items, a catalogue-sized collect is tens of GB in one process. The item path (embed, tokenize,
gate, publish, report) brings to the driver only what config bounds: the fit sample, new items to
place, codebooks and aggregates. Every such collect goes through `collect`, so a stage that would
gather more than `GENREC_DRIVER_ROWS` rows (Settings.driver_rows) stops with a message naming the
setting that bounds it, before it pulls anything. train and recommend collect the active map through
it too: the recommender needs all of it, so their remedy is a larger bound on a larger host.
"""
from __future__ import annotations


# The remedy train and recommend name: unlike the item path, the recommender cannot shard its map.
RECOMMENDER_ON_ONE_HOST = (
    "The recommender ranks every active item, so train and recommend hold the whole active map on one host "
    "(the item ids, and the codes: 2 bytes per item and level as int16, 800 MB at 10^8 items and 4 levels). "
    "Raise GENREC_DRIVER_ROWS to the catalogue's size on a host with the memory for it.")


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
