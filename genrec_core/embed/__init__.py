"""Item embedders."""
