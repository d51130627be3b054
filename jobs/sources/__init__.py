"""Datasets onto the raw contract: layout adapters, dataset specs, the Spark generator and landing."""
