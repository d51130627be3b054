"""Pipeline stages: one `main(ctx)` per stage, named as the DAG's task ids; they read and write tables through jobs.lake."""
