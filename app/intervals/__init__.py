"""Interval energies: cumulative counters turned into per-interval amounts."""

from app.intervals.align import interval_bounds, interval_start_ns, iter_interval_bounds
from app.intervals.engine import (
    HORIZON_ALL,
    HORIZON_NONE,
    IntervalEngine,
    compute_intervals,
    compute_window,
    history_start_ns,
)
from app.intervals.models import IntervalEnergy

__all__ = [
    "HORIZON_ALL",
    "HORIZON_NONE",
    "IntervalEnergy",
    "IntervalEngine",
    "compute_intervals",
    "compute_window",
    "history_start_ns",
    "interval_bounds",
    "interval_start_ns",
    "iter_interval_bounds",
]
