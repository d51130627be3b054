"""Raw data sources: the deterministic synthetic generator and the P5 reader.

Both return the same raw contract, `(catalogue, raw_events)` as pyarrow tables (see
`genrec_core.data.synthetic.CATALOGUE_SCHEMA` and `RAW_EVENTS_SCHEMA`); all cleaning happens later.
"""
