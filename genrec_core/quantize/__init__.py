"""Quantizers that turn item vectors into Semantic IDs, collision handling and SID quality metrics."""
