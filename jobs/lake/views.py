"""The catalogue's views over item_sid: the active map, and its change history from the Change Data Feed.

`genrec.sid_changes` keeps only what a user means by a change: an item's first SID (insert), a new SID
(update), leaving the catalogue (retire) and coming back (return). Every publish also rewrites each
row's map_version, so the raw feed holds an update per item per publish; those are filtered out.
"""
from __future__ import annotations

ITEM_SID_CURRENT = "item_sid_current"
SID_CHANGES = "sid_changes"


def definitions(settings, start_version: int = 0) -> dict[str, str]:
    """name -> SELECT of each view. start_version: the first item_sid version with the feed on."""
    table = settings.qualified("item_sid")
    feed = f"table_changes('{table}', {int(start_version)})"
    change = ("CASE WHEN pre.status = 'active' AND post.status = 'retired' THEN 'retire' "
              "WHEN pre.status = 'retired' AND post.status = 'active' THEN 'return' ELSE 'update' END")
    return {
        ITEM_SID_CURRENT: (f"SELECT item_id, sid, codes, map_version, content_hash, origin, tokenizer_version "
                           f"FROM {table} WHERE status = 'active'"),
        SID_CHANGES: (
            f"SELECT item_id, CAST(NULL AS STRING) AS old_sid, sid AS new_sid, 'insert' AS change, map_version, "
            f"_commit_version AS item_sid_version, _commit_timestamp AS committed_at "
            f"FROM {feed} WHERE _change_type = 'insert' "
            f"UNION ALL "
            f"SELECT post.item_id, pre.sid AS old_sid, post.sid AS new_sid, {change} AS change, post.map_version, "
            f"post._commit_version AS item_sid_version, post._commit_timestamp AS committed_at "
            f"FROM (SELECT * FROM {feed} WHERE _change_type = 'update_postimage') post "
            f"JOIN (SELECT * FROM {feed} WHERE _change_type = 'update_preimage') pre "
            f"ON post.item_id = pre.item_id AND post._commit_version = pre._commit_version "
            f"WHERE NOT (pre.sid <=> post.sid) OR NOT (pre.status <=> post.status)"),
    }


def refresh(spark, settings) -> None:
    """(Re)creates the views in the persistent catalogue; idempotent."""
    for name, select in definitions(settings).items():
        spark.sql(f"CREATE OR REPLACE VIEW {settings.qualified(name)} AS {select}")
