"""Pure Spark transformations (DataFrame in, DataFrame out): no tables, files or MLflow; each has a numpy reference in genrec_core."""
