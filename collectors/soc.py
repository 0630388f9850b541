"""End-of-interval state of charge for storage intervals (the accounting realises losses from it).

The interval engine turns counters into energies; a battery's `soc_pct` is instantaneous, so
the pipeline remembers recent SoC readings per storage device and stamps each storage
interval with the last SoC at or before the interval's end.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterable

import msgspec

from app.intervals.models import IntervalEnergy
from app.registry import Registry, Role
from app.telemetry.models import Reading

SOC = "soc_pct"


class SocTracker:
    """Recent `soc_pct` readings of storage devices, by time."""

    def __init__(self, registry: Registry, keep_s: int = 3 * 86_400) -> None:
        self.registry = registry
        self.keep_ns = keep_s * 10**9
        self._series: dict[tuple[str, str], list[tuple[int, float]]] = {}

    def add(self, readings: Iterable[Reading]) -> None:
        for r in readings:
            soc = r.values.get(SOC)
            if soc is None:
                continue
            device = self.registry.device(r.park, r.device)
            if device is None or device.role is not Role.STORAGE:
                continue
            series = self._series.setdefault((r.park, r.device), [])
            point = (r.ts_ns, soc)
            if not series or point[0] > series[-1][0]:
                series.append(point)
            else:
                i = bisect_right(series, (r.ts_ns, float("inf")))
                if i and series[i - 1][0] == r.ts_ns:
                    series[i - 1] = point  # same timestamp: last one wins, as for counters
                else:
                    insort(series, point)
            if series[-1][0] - series[0][0] > 2 * self.keep_ns:
                cutoff = series[-1][0] - self.keep_ns
                del series[: bisect_right(series, (cutoff, float("inf")))]

    def stamp(self, intervals: list[IntervalEnergy]) -> list[IntervalEnergy]:
        """Intervals of storage devices get the last SoC in (start, end]; others unchanged."""
        out = intervals
        for k, iv in enumerate(intervals):
            series = self._series.get((iv.park, iv.device))
            if not series:
                continue
            i = bisect_right(series, (iv.end_ns, float("inf")))
            if i == 0 or series[i - 1][0] <= iv.start_ns:
                continue
            soc = series[i - 1][1]
            if iv.values.get(SOC) == soc:
                continue
            if out is intervals:
                out = list(intervals)
            out[k] = msgspec.structs.replace(iv, values={**iv.values, SOC: soc})
        return out
