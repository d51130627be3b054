"""SparkSession with Delta Lake and a persistent catalogue, for local mode or a cluster.

The Delta jars come from the cache filled by `infra/fetch_delta_jars.sh` and are handed to Spark
with `spark.jars`, so nothing is resolved through Ivy at run time. The catalogue is a Hive metastore
kept in Derby inside the lakehouse, so `genrec sql` in a fresh process sees the tables. When the
lakehouse's catalogue server runs (`genrec catalog start`, jobs/lake/catalog_server.py), sessions
connect to it and many processes share the catalogue; otherwise Spark opens it embedded, one process
at a time.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from jobs.lake import catalog_server
from jobs.lake.settings import REPO_ROOT, Settings, quiet_environment


def delta_jar_paths(jars_dir: Path) -> list[Path]:
    env = (REPO_ROOT / "infra" / "delta_jars.env").read_text()
    coords = re.search(r'DELTA_JARS="([^"]+)"', env).group(1).split()
    paths = []
    for coord in coords:
        _group, artifact, version = coord.split(":")
        jar = jars_dir / f"{artifact}-{version}.jar"
        if not jar.is_file():
            raise FileNotFoundError(
                f"Delta jar {jar} is missing. Run `make jars` (or infra/fetch_delta_jars.sh "
                f"{jars_dir.parent}) to fetch {coord} from Maven Central.")
        paths.append(jar)
    return paths


def get_spark(settings: Settings, app_name: str = "genrec", catalogue: bool = True):
    """The session for `settings`' lakehouse. catalogue=False: no Hive metastore (Spark's in-memory
    catalogue), for work that only reads and writes paths and so need not wait for the catalogue."""
    quiet_environment()
    # Python workers must use this interpreter (the venv), not whatever `python3` is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    settings.lakehouse.mkdir(parents=True, exist_ok=True)
    metastore, extra_jars = _catalogue_config(settings) if catalogue else ({}, [])
    jar_paths = delta_jar_paths(settings.jars_dir) + extra_jars
    jars = ",".join(str(p) for p in jar_paths)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.jars", jars)
        .config("spark.jars.ivy", str(settings.cache / "ivy"))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.warehouse.dir", str(settings.lakehouse / "_warehouse"))
        # Whole-stage codegen of a wide row (the cleaning rules) yields methods over HotSpot's 8 kB
        # limit, which the JIT then never compiles; interpreted they run about 3x slower.
        .config("spark.driver.extraJavaOptions",
                f"-Dderby.system.home={settings.lakehouse} -XX:-DontCompileHugeMethods")
        .config("spark.executor.extraJavaOptions", "-XX:-DontCompileHugeMethods")
        .config("spark.sql.adaptive.enabled", "true")
        # The cleaning rules run over Arrow batches (mapInArrow); at the default 10,000 rows per batch
        # the per-batch cost of the Python side added 7 s to the stage at 10^7 rows.
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", str(settings.spark_ui).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", settings.driver_memory)
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        # Delta replays its log with this many tasks; the default (50) dominates small local jobs.
        .config("spark.databricks.delta.snapshotPartitions", str(settings.delta_snapshot_partitions))
    )
    for key, value in metastore.items():
        builder = builder.config(key, value)
    if catalogue:
        builder = builder.enableHiveSupport()
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if catalogue:
        _tolerate_a_racing_creator(lambda: spark.sql(f"CREATE DATABASE IF NOT EXISTS {settings.database}"))
    return spark


def _catalogue_config(settings: Settings) -> tuple[dict[str, str], list[Path]]:
    """Spark settings (and extra jars) for the Hive metastore: through the lakehouse's catalogue server
    when one runs, else the Derby files opened embedded, once no other process holds them."""
    server = catalog_server.address(settings)
    if server:
        client = catalog_server.client_jar(settings)
        # The Hive client loads the JDBC driver from the JVM's class path, not from spark.jars.
        return {"spark.hadoop.javax.jdo.option.ConnectionURL": catalog_server.jdbc_url(settings, server),
                "spark.hadoop.javax.jdo.option.ConnectionDriverName": catalog_server.CLIENT_DRIVER,
                "spark.driver.extraClassPath": str(client)}, [client]
    from pyspark import SparkContext

    if SparkContext._active_spark_context is None:  # a JVM of this process holds no lock yet
        catalog_server.check_embedded_free(settings)
    url = f"jdbc:derby:;databaseName={catalog_server.metastore_path(settings)};create=true"
    return {"spark.hadoop.javax.jdo.option.ConnectionURL": url}, []


def _tolerate_a_racing_creator(create) -> None:
    """Runs a CREATE ... IF NOT EXISTS. Through the catalogue server, two processes can both find the
    object missing and both create it; the later one's 'already exists' means the work is done."""
    from pyspark.errors import AnalysisException

    try:
        create()
    except AnalysisException as e:
        if "ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
            raise


def register_table(spark, settings: Settings, table: str) -> None:
    """Points the catalogue entry genrec.<table> at the Delta folder (idempotent)."""
    path = settings.table_path(table)
    _tolerate_a_racing_creator(lambda: spark.sql(
        f"CREATE TABLE IF NOT EXISTS {settings.qualified(table)} USING DELTA LOCATION '{path}'"))
