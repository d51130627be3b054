"""Thin entry points around genrec_core: stages/ (one per pipeline stage), transforms/ (pure Spark
DataFrame code), sources/ (datasets onto the raw contract), lake/ (Delta, MLflow, files, environment)
and cli/ (the `genrec` command). Lower rooms never import higher ones: lake < transforms, sources <
stages < cli."""
