"""Pure parts of the data layer: the synthetic generator's plan and numpy references
(`synthetic`), the P5 reader (`p5`), and the k-core and split references (`kcore`).

The Spark jobs built on them (`jobs/generate.py`, `jobs/adapters.py`, `jobs/kcore.py`) produce and
consume the raw contract of `schemas.tables.RAW_EVENTS` and `RAW_ITEMS`; all cleaning happens later.
"""
