"""Offline ranking metrics for next-item recommendation."""
