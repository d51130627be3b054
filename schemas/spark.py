"""Spark StructTypes derived from schemas.tables."""
from __future__ import annotations

from schemas.tables import TableSpec


def spark_type(type_name: str):
    from pyspark.sql import types as T

    simple = {
        "string": T.StringType(), "int": T.IntegerType(), "bigint": T.LongType(),
        "double": T.DoubleType(), "float": T.FloatType(), "boolean": T.BooleanType(),
        "date": T.DateType(), "timestamp": T.TimestampType(),
    }
    if type_name in simple:
        return simple[type_name]
    if type_name.startswith("array<") and type_name.endswith(">"):
        return T.ArrayType(spark_type(type_name[len("array<"):-1]), containsNull=True)
    raise ValueError(f"unsupported column type {type_name!r}")


def struct_type(spec: TableSpec):
    from pyspark.sql import types as T

    return T.StructType([T.StructField(c.name, spark_type(c.type), c.nullable) for c in spec.columns])


def conform(df, spec: TableSpec):
    """Selects exactly the spec's columns, in order, cast to their declared types."""
    from pyspark.sql import functions as F

    missing = [c for c in spec.column_names if c not in df.columns]
    if missing:
        raise ValueError(f"{spec.name}: frame lacks column(s) {missing}")
    return df.select([F.col(c.name).cast(spark_type(c.type)).alias(c.name) for c in spec.columns])
