"""Pure parts of the data layer: the synthetic generator's plan and numpy references
(`synthetic`), the P5 reader (`p5`), the k-core and split references (`kcore`), and the removal
rules (duplicates, bot days, near-duplicates) that the clean stage runs over Arrow batches (`removals`).

The Spark jobs built on them (`jobs/sources/generator.py`, `jobs/sources/adapters.py`, `jobs/transforms/kcore_filter.py`) produce and
consume the raw contract of `schemas.tables.RAW_EVENTS` and `RAW_ITEMS`; all cleaning happens later.
"""
