"""Interval energies: cumulative counters turned into per-interval amounts."""
