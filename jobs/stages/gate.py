"""The gate stage: validate the staged SID map with great-expectations before anything is published.

The suite is derived from schemas.tables (not-null, unique item_id and sid) plus data-dependent
expectations: codes in range per level, one row per catalogue item, every item present, and the
SID-quality threshold. A failure raises GateFailed naming each broken expectation.
"""
from __future__ import annotations

from jobs.lake import delta_io
from jobs.stages.context import RunContext
from schemas import tables as S


class GateFailed(RuntimeError):
    pass


def staged_frame(ctx: RunContext):
    """The staged map as pandas, with one column per code level for range checks."""
    pdf = delta_io.read(ctx.spark, ctx.settings, S.ITEM_SID_STAGED).toPandas()
    width = max((len(c) for c in pdf.codes), default=0)
    for level in range(width):
        pdf[f"code_{level}"] = [c[level] if len(c) > level else None for c in pdf.codes]
    pdf["n_codes"] = [len(c) for c in pdf.codes]
    return pdf


def validate(pdf, level_sizes: list[int], catalogue_ids: list[str]):
    """Runs the suite on the staged map; returns the great-expectations validation result."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    from schemas.expectations import suite_for

    extra = [gxe.ExpectTableRowCountToEqual(value=len(catalogue_ids)),
             gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=catalogue_ids),
             gxe.ExpectColumnValuesToBeBetween(column="n_codes", min_value=len(level_sizes),
                                               max_value=len(level_sizes))]
    for level, size in enumerate(level_sizes):
        extra += [gxe.ExpectColumnValuesToNotBeNull(column=f"code_{level}"),
                  gxe.ExpectColumnValuesToBeBetween(column=f"code_{level}", min_value=0, max_value=size - 1)]
    context = gx.get_context(mode="ephemeral")
    suite = context.suites.add(suite_for(S.ITEM_SID_STAGED, extra, suffix="_gate"))
    source = context.data_sources.add_pandas("staged_map")
    batch_def = source.add_dataframe_asset("item_sid_staged").add_batch_definition_whole_dataframe("all")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="item_sid_gate", data=batch_def, suite=suite))
    return definition.run(batch_parameters={"dataframe": pdf})


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
    catalogue = [r[0] for r in delta_io.read(ctx.spark, ctx.settings, S.ITEMS).select("item_id").collect()]
    pdf = staged_frame(ctx)
    result = validate(pdf, tokenize_result["code_level_sizes"], catalogue)
    problems = failures(result)
    rate = tokenize_result["metrics"]["collision_rate"]
    if rate > ctx.config.gate.max_collision_rate:
        problems.append(f"collision rate before resolution {rate:.3f} exceeds gate.max_collision_rate "
                        f"{ctx.config.gate.max_collision_rate}")
    if problems:
        raise GateFailed("The staged SID map failed the publish gate; nothing was published.\n  - "
                         + "\n  - ".join(problems))
    return {"passed": True, "expectations": len(result.results), "rows": len(pdf)}
