"""great-expectations suites derived from schemas.tables.

`suite_for(spec)` turns a table's constraints (not-null columns, unique keys, allowed values) into
expectations; callers add data-dependent ones (code ranges, row counts) through `extra`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from schemas.tables import TableSpec


def expectations_for(spec: TableSpec, allowed: Mapping[str, Sequence[str]] | None = None) -> list:
    """`allowed` replaces a column's declared value set where the config narrows or widens it
    (clean.event_types for interactions_clean.event_type)."""
    import great_expectations.expectations as gxe

    unknown = sorted(set(allowed or {}) - set(spec.allowed_values))
    if unknown:
        raise KeyError(f"{spec.name} declares no value set for {unknown}")

    out = [gxe.ExpectColumnToExist(column=c) for c in spec.column_names]
    out += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in spec.not_null]
    for key in spec.unique:
        if len(key) == 1:
            out.append(gxe.ExpectColumnValuesToBeUnique(column=key[0]))
        else:
            out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(key)))
    for col, values in {**spec.allowed_values, **(allowed or {})}.items():
        out.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(values)))
    return out


def suite_for(spec: TableSpec, extra: list | None = None, suffix: str = "",
              allowed: Mapping[str, Sequence[str]] | None = None):
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=f"{spec.name}{suffix}")
    for exp in expectations_for(spec, allowed) + list(extra or []):
        suite.add_expectation(exp)
    return suite
