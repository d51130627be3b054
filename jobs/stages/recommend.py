"""The recommend stage: the champion recommender's top-k active items for every user with a test
split, scored on Spark executors, written to the `recommendations` table's partition for the run's
logical date (a rerun for that date replaces the partition, and only it)."""
from __future__ import annotations

from jobs.lake import delta_io, mlflow_models, recommender_files
from jobs.stages.context import RunContext
from schemas import tables as S


class NoChampion(RuntimeError):
    """No version of the configured recommender holds the champion alias yet."""


def champion_files(ctx: RunContext, name: str):
    """(champion version, {file name: bytes}) of registered model `name`."""
    c = mlflow_models.client(ctx.settings)
    champion = mlflow_models.alias_version(c, name, mlflow_models.CHAMPION)
    if champion is None:
        raise NoChampion(f"{name} has no champion yet: run the train stage first (genrec run --stages train)")
    folder = mlflow_models.download_version(c, name, champion.version,
                                            ctx.settings.staging / "recommenders" / name / str(champion.version))
    return champion, recommender_files.read_files(folder)


def main(ctx: RunContext) -> dict:
    from pyspark.sql import functions as F

    from jobs.transforms.batch_scoring import OUTPUT_DDL, score_partitions

    # The champion first: without one (a first night) the stage stops before it starts Spark.
    name = mlflow_models.recommender_model(ctx.config.train.model)
    champion, files = champion_files(ctx, name)
    spark, settings, cfg = ctx.spark, ctx.settings, ctx.config
    active = delta_io.read(spark, settings, S.ITEM_SID).where("status = 'active'").select("item_id", "sid",
                                                                                          "map_version")
    map_versions = [r[0] for r in active.select("map_version").distinct().collect()]
    if len(map_versions) != 1:
        raise RuntimeError(f"item_sid's active items carry map versions {map_versions}; republish the map")
    from jobs.transforms import driver_rows

    active_ids = driver_rows.collect(active.select("item_id"), "the active items the champion may recommend",
                                     settings.driver_rows, driver_rows.RECOMMENDER_ON_ONE_HOST).item_id.tolist()
    users = (delta_io.read(spark, settings, S.USER_SEQUENCES).where(F.col("split") == "test")
             .select("user_id", F.concat("item_ids", F.array("target")).alias("history")))
    n_users = users.count()
    shared = spark.sparkContext.broadcast({"files": files, "active": active_ids})
    scored = users.repartition(max(2, spark.sparkContext.defaultParallelism), "user_id").mapInPandas(
        score_partitions(shared, f"{name}/{champion.version}", cfg.train.recommend_k,
                         cfg.train.recommend_exclude_history, cfg.eval.num_beams, cfg.eval.batch_size), OUTPUT_DDL)
    day = ctx.logical_time.date().isoformat()
    rows = (scored.join(active.select("item_id", "sid"), "item_id")
            .withColumn("model", F.lit(name)).withColumn("model_version", F.lit(str(champion.version)))
            .withColumn("map_version", F.lit(map_versions[0]))
            .withColumn("as_of_date", F.lit(day).cast("date")))
    version = delta_io.overwrite(spark, settings, S.RECOMMENDATIONS, rows, replace_where=f"as_of_date = '{day}'")
    shared.destroy()
    written = delta_io.read(spark, settings, S.RECOMMENDATIONS).where(F.col("as_of_date") == day)
    counts = written.agg(F.count("*").alias("rows"), F.countDistinct("user_id").alias("users")).first()
    return {"model": name, "model_version": str(champion.version), "map_version": map_versions[0],
            "as_of_date": day, "users": int(counts["users"]), "rows": int(counts["rows"]),
            "users_with_test_split": int(n_users), "recommendations_version": version}
