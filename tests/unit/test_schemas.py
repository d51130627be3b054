"""Schemas are the single source: Spark types, expectation suites and docs all follow from them."""
from __future__ import annotations

import pytest

from schemas import tables as S
from schemas.docs import all_tables_markdown
from schemas.spark import spark_type, struct_type


@pytest.mark.parametrize("spec", S.ALL_TABLES, ids=lambda s: s.name)
def test_struct_type_follows_spec(spec):
    st = struct_type(spec)
    assert [f.name for f in st.fields] == spec.column_names
    assert [f.nullable for f in st.fields] == [c.nullable for c in spec.columns]
    for key in spec.unique + tuple((c,) for c in spec.allowed_values) + (spec.partition_by,):
        assert set(key) <= set(spec.column_names)


def test_types():
    assert spark_type("array<float>").simpleString() == "array<float>"
    with pytest.raises(ValueError, match="unsupported"):
        spark_type("map<string,int>")


def test_expectations_derived_from_constraints():
    from schemas.expectations import expectations_for

    kinds = [(type(e).__name__, getattr(e, "column", None)) for e in expectations_for(S.INTERACTIONS_CLEAN)]
    assert ("ExpectColumnValuesToBeUnique", "event_id") in kinds
    assert ("ExpectColumnValuesToBeInSet", "event_type") in kinds
    assert sum(k == "ExpectColumnValuesToNotBeNull" for k, _ in kinds) == len(S.INTERACTIONS_CLEAN.not_null)


def test_docs_list_every_table_and_column():
    md = all_tables_markdown()
    for spec in S.ALL_TABLES:
        assert f"genrec.{spec.name}" in md
        assert all(f"`{c}`" in md for c in spec.column_names)


def test_committed_table_docs_are_current():
    from pathlib import Path

    committed = (Path(__file__).resolve().parents[2] / "docs" / "tables.md").read_text()
    assert committed.strip() == all_tables_markdown().strip(), "run: python -m schemas.docs > docs/tables.md"
