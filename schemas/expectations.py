"""great-expectations suites derived from schemas.tables.

`suite_for(spec)` turns a table's constraints (not-null columns, unique keys, allowed values) into
expectations; callers add data-dependent ones (code ranges, row counts) through `extra`.
"""
from __future__ import annotations

from schemas.tables import TableSpec


def expectations_for(spec: TableSpec) -> list:
    import great_expectations.expectations as gxe

    out = [gxe.ExpectColumnToExist(column=c) for c in spec.column_names]
    out += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in spec.not_null]
    for key in spec.unique:
        if len(key) == 1:
            out.append(gxe.ExpectColumnValuesToBeUnique(column=key[0]))
        else:
            out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(key)))
    for col, values in spec.allowed_values.items():
        out.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(values)))
    return out


def suite_for(spec: TableSpec, extra: list | None = None, suffix: str = ""):
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=f"{spec.name}{suffix}")
    for exp in expectations_for(spec) + list(extra or []):
        suite.add_expectation(exp)
    return suite
