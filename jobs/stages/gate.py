"""The gate stage: validate the staged SID map with great-expectations before anything is published.
The validation runs on Spark (great-expectations' Spark data source): only aggregates reach the driver.

The suite is derived from schemas.tables (not-null, unique item_id, allowed statuses) plus
data-dependent expectations: a unique SID among active and reserved items, codes in range per level
for active items, exactly the catalogue active, the SID-quality threshold, and the churn gate against
the published map. A failure raises GateFailed naming each broken expectation.
"""
from __future__ import annotations

from jobs.lake import delta_io
from jobs.stages.context import RunContext
from schemas import tables as S


class GateFailed(RuntimeError):
    pass


ACTIVE = "status = 'active'"


def staged_frame(ctx: RunContext):
    """The staged map as a Spark frame, with one column per code level for range checks, `held_sid`
    (the SID of each active or still-reserved item; null for a retired item whose reservation
    lapsed), `active_item` and `in_catalogue` (whether an active row's item is in `items`)."""
    from pyspark.sql import functions as F

    from jobs.transforms.map_lifecycle import reserve_cutoff

    staged = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID_STAGED)
    width = staged.agg(F.max(F.size("codes"))).first()[0] or 0
    catalogue = delta_io.read(ctx.spark, ctx.settings, S.ITEMS).select("item_id", F.lit(True).alias("in_catalogue"))
    cutoff = F.lit(reserve_cutoff(ctx.logical_time, ctx.config.tokenize.sid_reserve_days)).cast("timestamp")
    active = F.col("status") == "active"
    held = active | (F.col("retired_at") > cutoff)
    return (staged.join(catalogue, "item_id", "left")
            .select("*", *[F.col("codes").getItem(level).alias(f"code_{level}") for level in range(width)],
                    F.size("codes").alias("n_codes"),
                    F.when(held, F.col("sid")).alias("held_sid"),
                    F.when(active, F.col("item_id")).alias("active_item"))
            .withColumn("in_catalogue", F.coalesce("in_catalogue", F.lit(False))))


def validate(staged_df, level_sizes: list[int], catalogue_size: int):
    """Runs the suite on the staged map (a Spark frame from `staged_frame`) through great-expectations'
    Spark data source, so the map never leaves the executors; returns the validation result."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    from schemas.expectations import suite_for

    active = {"row_condition": ACTIVE, "condition_parser": "spark"}
    extra = [gxe.ExpectColumnValuesToBeUnique(column="held_sid"),
             gxe.ExpectColumnValuesToBeInSet(column="in_catalogue", value_set=[True], **active),
             gxe.ExpectColumnUniqueValueCountToBeBetween(column="active_item", min_value=catalogue_size,
                                                         max_value=catalogue_size),
             gxe.ExpectColumnValuesToBeBetween(column="n_codes", min_value=len(level_sizes),
                                               max_value=len(level_sizes), **active)]
    for level, size in enumerate(level_sizes):
        extra += [gxe.ExpectColumnValuesToNotBeNull(column=f"code_{level}", **active),
                  gxe.ExpectColumnValuesToBeBetween(column=f"code_{level}", min_value=0, max_value=size - 1,
                                                    **active)]
    context = gx.get_context(mode="ephemeral")
    suite = context.suites.add(suite_for(S.ITEM_SID_STAGED, extra, suffix="_gate"))
    source = context.data_sources.add_spark("staged_map")
    batch_def = source.add_dataframe_asset("item_sid_staged").add_batch_definition_whole_dataframe("all")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="item_sid_gate", data=batch_def, suite=suite))
    return definition.run(batch_parameters={"dataframe": staged_df})


def failures(result) -> list[str]:
    out = []
    for r in result.results:
        if not r.success:
            cfg = r.expectation_config
            kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "value_set")}
            observed = (r.result or {}).get("observed_value", (r.result or {}).get("unexpected_count"))
            out.append(f"{cfg.type} {kwargs} (observed: {observed})")
    return out


def main(ctx: RunContext, tokenize_result: dict) -> dict:
    staged = staged_frame(ctx).cache()
    catalogue_size = delta_io.read(ctx.spark, ctx.settings, S.ITEMS).count()
    result = validate(staged, tokenize_result["code_level_sizes"], catalogue_size)
    rows = staged.count()
    staged.unpersist()
    problems = failures(result)
    rate = tokenize_result["metrics"]["collision_rate"]
    if rate > ctx.config.gate.max_collision_rate:
        problems.append(f"collision rate before resolution {rate:.3f} exceeds gate.max_collision_rate "
                        f"{ctx.config.gate.max_collision_rate}")
    churn_problem, accepted = churn_check(tokenize_result.get("lifecycle") or {}, ctx.config.gate)
    if churn_problem:
        problems.append(churn_problem)
    if problems:
        raise GateFailed("The staged SID map failed the publish gate; nothing was published.\n  - "
                         + "\n  - ".join(problems))
    return {"passed": True, "expectations": len(result.results), "rows": rows, "churn_accepted": accepted}


def churn_check(life: dict, gate_cfg) -> tuple[str | None, bool]:
    """(problem or None, whether --accept-churn let a churn over the limit through). Under assign an
    unchanged old item never moves, so any churn there is a defect, which no override lets through."""
    churn, mode = float(life.get("churn_full", 0.0)), life.get("mode")
    compared = life.get("compared", 0)
    if mode == "assign" and churn > 0:
        return (f"assign mode moved {life.get('n_moved')} of {compared} unchanged old items "
                f"(churn {churn:.4f}); under assign it must be 0"), False
    if churn <= gate_cfg.max_churn:
        return None, False
    if gate_cfg.accept_churn:
        return None, True
    return (f"churn {churn:.1%} of {compared} unchanged old items changed SID (first code {life.get('churn_first', 0):.1%}), "
            f"over gate.max_churn {gate_cfg.max_churn:.0%}: this {mode} would break every model and table keyed "
            "by the old SIDs. Rerun with --accept-churn to publish it deliberately (recorded in sid_map_versions), "
            "or keep tokenize.align=true"), False
