"""Delta table I/O through Spark: overwrite (whole or replaceWhere), append, no-op-aware MERGE, reads and versions."""
from __future__ import annotations

from schemas.spark import conform
from schemas.tables import TableSpec


def table_exists(spark, settings, spec: TableSpec) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, str(settings.table_path(spec.name)))


def overwrite(spark, settings, spec: TableSpec, df, replace_where: str | None = None,
              layout: str = "repartition") -> int:
    """One Delta commit replacing the table's contents, or only the rows matching replace_where (the
    whole table when it does not exist yet). Returns the new version.

    layout of a partitioned table's files: "repartition" writes one file per partition value;
    "rebalance" lets AQE split big values over several tasks (a date of a large log); "as_is" keeps
    a frame that already arrives clustered by the partition columns, which either would shuffle again."""
    from jobs.lake.spark_session import register_table

    if layout not in ("repartition", "rebalance", "as_is"):
        raise ValueError(f"layout must be 'repartition', 'rebalance' or 'as_is', not {layout!r}")
    df = conform(df, spec)
    if spec.partition_by and layout == "repartition":
        df = df.repartition(*spec.partition_by)
    elif spec.partition_by and layout == "rebalance":
        df = df.hint("rebalance", *spec.partition_by)
    writer = df.write.format("delta").mode("overwrite")
    exists = table_exists(spark, settings, spec)
    if not exists:
        for key, value in spec.properties.items():
            writer = writer.option(key, value)
    if spec.partition_by:
        writer = writer.partitionBy(*spec.partition_by)
    if replace_where and exists:
        writer = writer.option("replaceWhere", replace_where)
    writer.save(str(settings.table_path(spec.name)))
    register_table(spark, settings, spec.name)
    if exists:
        ensure_properties(spark, settings, spec)
    return latest_version(spark, settings, spec)


def append(spark, settings, spec: TableSpec, df) -> int:
    """One Delta commit adding df's rows (creating the table when it does not exist). Returns the new version."""
    from jobs.lake.spark_session import register_table

    if not table_exists(spark, settings, spec):
        return overwrite(spark, settings, spec, df)
    df = conform(df, spec)
    writer = df.write.format("delta").mode("append")
    if spec.partition_by:
        writer = writer.partitionBy(*spec.partition_by)
    writer.save(str(settings.table_path(spec.name)))
    register_table(spark, settings, spec.name)
    return latest_version(spark, settings, spec)


def ensure_properties(spark, settings, spec: TableSpec) -> None:
    """Sets the spec's table properties on a table made before they were declared (one commit, once)."""
    if not spec.properties:
        return
    current = table_properties(spark, settings, spec)
    missing = {k: v for k, v in spec.properties.items() if current.get(k) != v}
    if missing:
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(missing.items()))
        spark.sql(f"ALTER TABLE delta.`{settings.table_path(spec.name)}` SET TBLPROPERTIES ({pairs})")


def table_properties(spark, settings, spec: TableSpec) -> dict[str, str]:
    from delta.tables import DeltaTable

    detail = DeltaTable.forPath(spark, str(settings.table_path(spec.name))).detail().first()
    return dict(detail["properties"] or {})


def merge_upsert(spark, settings, spec: TableSpec, df, keys: tuple[str, ...], delete_missing: bool,
                 compare: tuple[str, ...] | None = None) -> int:
    """MERGE df into the table on `keys`: insert new rows, update rows whose `compare` columns changed,
    and (if delete_missing) delete rows absent from df. Unchanged rows are left untouched, so a rerun
    with the same input commits nothing. Returns the table's version after the merge."""
    from delta.tables import DeltaTable

    from jobs.lake.spark_session import register_table

    df = conform(df, spec)
    path = str(settings.table_path(spec.name))
    if not DeltaTable.isDeltaTable(spark, path):
        return overwrite(spark, settings, spec, df)
    compare = compare or tuple(c for c in spec.column_names if c not in keys)
    cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in compare)
    ensure_properties(spark, settings, spec)
    target = DeltaTable.forPath(spark, path)
    if _merge_is_noop(spark, target.toDF(), df, keys, compare, delete_missing):
        register_table(spark, settings, spec.name)
        return latest_version(spark, settings, spec)
    m = target.alias("t").merge(df.alias("s"), cond)
    m = m.whenMatchedUpdateAll(condition=changed).whenNotMatchedInsertAll()
    if delete_missing:
        m = m.whenNotMatchedBySourceDelete()
    m.execute()
    register_table(spark, settings, spec.name)
    return latest_version(spark, settings, spec)


def _merge_is_noop(spark, current, incoming, keys, compare, delete_missing: bool) -> bool:
    # Delta commits a new version even for a MERGE that changes no row; checking first keeps an
    # identical rerun from advancing the table's history.
    cols = list(dict.fromkeys(list(keys) + list(compare)))  # a key may also be compared
    new_or_changed = incoming.select(cols).exceptAll(current.select(cols)).limit(1).count()
    if new_or_changed:
        return False
    if delete_missing:
        return current.select(*keys).exceptAll(incoming.select(*keys)).limit(1).count() == 0
    return True


def read(spark, settings, spec: TableSpec, version: int | None = None):
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(settings.table_path(spec.name)))


# Table features under which a snapshot's parquet files do not hold its rows as they are: deletion
# vectors hide rows that the files still contain, and column mapping renames the files' columns.
FILE_READ_UNSAFE_FEATURES = ("deletionVectors", "columnMapping")


def snapshot_files(spark, settings, spec: TableSpec) -> tuple[int, tuple[str, ...]] | None:
    """(version, data file URIs) of the table's current snapshot, for a reader that bypasses Spark
    (pyarrow inside a task); None when the files alone do not hold the table's rows. The version is
    pinned, so a later commit cannot change the list; VACUUM's retention keeps the files readable."""
    from delta.tables import DeltaTable

    detail = DeltaTable.forPath(spark, str(settings.table_path(spec.name))).detail().first()
    if set(detail.tableFeatures or ()) & set(FILE_READ_UNSAFE_FEATURES):
        return None
    version = latest_version(spark, settings, spec)
    return version, tuple(sorted(read(spark, settings, spec, version).inputFiles()))


def latest_version(spark, settings, spec: TableSpec) -> int:
    from delta.tables import DeltaTable

    hist = DeltaTable.forPath(spark, str(settings.table_path(spec.name))).history(1)
    return int(hist.select("version").first()[0])
