"""Data-quality report of one park: measured / estimated / missing intervals, flags, rejections.

Pure (no I/O). Fed window by window with stored interval energies and dead letters, so a
year of a large park is counted without holding it in memory.

Expected intervals: every interval of the park's local-time grid (`app.intervals.align`)
whose *start* lies in `[start_ns, end_ns)` — the same rule `Storage.intervals` selects by —
for every registry device (every role of docs/gateway-contract.md §7 publishes a cumulative
counter, so each device owes one interval energy per interval). A stored interval counts as
`estimated` when part of its amount was spread over a gap in the readings, else as
`measured`; an expected interval with nothing stored is `missing`. Flags are counted as
intervals carrying them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.intervals.align import iter_interval_bounds
from app.intervals.models import IntervalEnergy
from app.registry.models import Park
from app.telemetry.models import DeadLetter

#: Flags of `IntervalEnergy.flags` counted per device (field name in the report → flag).
FLAG_FIELDS: dict[str, str] = {
    "resets": "reset",
    "implausible": "implausible",
    "counter_decreases": "counter_decrease",
    "gaps": "gap",
    "glitches": "glitch",
    "suspect": "suspect",
    "conflicts": "conflict",
}
#: A device's missing runs listed individually up to this many (the counts stay exact).
MAX_MISSING_RANGES = 100


@dataclass(slots=True)
class QualityCounts:
    """Counts of one device (or the park) over one period."""

    expected_intervals: int = 0
    measured_intervals: int = 0
    estimated_intervals: int = 0
    missing_intervals: int = 0
    #: stored intervals that are not on the park's current grid (e.g. after a change of
    #: `interval_minutes`): not counted as measured, so they cannot hide a missing one
    unaligned_intervals: int = 0
    resets: int = 0
    implausible: int = 0
    counter_decreases: int = 0
    gaps: int = 0
    #: storage intervals without a state of charge: their losses are not observed, and the
    #: balance counts their net charge when charged (docs/accounting.md §2)
    storage_without_soc: int = 0
    #: intervals with a suppressed glitch, a still undecided drop, a refused conflicting reading
    glitches: int = 0
    suspect: int = 0
    conflicts: int = 0
    rejected_readings: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def completeness(self) -> float | None:
        """Share of expected intervals with data (measured or estimated); None if none expected."""
        if self.expected_intervals == 0:
            return None
        return (self.measured_intervals + self.estimated_intervals) / self.expected_intervals

    @property
    def measured_share(self) -> float | None:
        """Share of expected intervals measured outright (no gap estimate)."""
        if self.expected_intervals == 0:
            return None
        return self.measured_intervals / self.expected_intervals

    def add(self, other: QualityCounts) -> None:
        self.expected_intervals += other.expected_intervals
        self.measured_intervals += other.measured_intervals
        self.estimated_intervals += other.estimated_intervals
        self.missing_intervals += other.missing_intervals
        self.unaligned_intervals += other.unaligned_intervals
        self.resets += other.resets
        self.implausible += other.implausible
        self.counter_decreases += other.counter_decreases
        self.gaps += other.gaps
        self.storage_without_soc += other.storage_without_soc
        self.glitches += other.glitches
        self.suspect += other.suspect
        self.conflicts += other.conflicts
        self.rejected_readings += other.rejected_readings
        self.rejected_by_reason.update(other.rejected_by_reason)

    def count_interval(self, interval: IntervalEnergy) -> None:
        if interval.estimated:
            self.estimated_intervals += 1
        else:
            self.measured_intervals += 1
        flags = set(interval.flags)
        self.resets += "reset" in flags
        self.implausible += "implausible" in flags
        self.counter_decreases += "counter_decrease" in flags
        self.gaps += "gap" in flags
        if interval.role == "storage" and "soc_pct" not in interval.values:
            self.storage_without_soc += 1
        self.glitches += "glitch" in flags
        self.suspect += "suspect" in flags
        self.conflicts += "conflict" in flags

    def count_rejection(self, letter: DeadLetter) -> None:
        self.rejected_readings += 1
        self.rejected_by_reason[letter.reason.value] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "expected_intervals": self.expected_intervals,
            "measured_intervals": self.measured_intervals,
            "estimated_intervals": self.estimated_intervals,
            "missing_intervals": self.missing_intervals,
            "unaligned_intervals": self.unaligned_intervals,
            "completeness": self.completeness,
            "measured_share": self.measured_share,
            "resets": self.resets,
            "implausible": self.implausible,
            "counter_decreases": self.counter_decreases,
            "gaps": self.gaps,
            "storage_without_soc": self.storage_without_soc,
            "glitches": self.glitches,
            "suspect": self.suspect,
            "conflicts": self.conflicts,
            "rejected_readings": self.rejected_readings,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
        }


@dataclass(slots=True)
class DeviceQuality:
    """One device: totals over the window, per period, and its runs of missing intervals."""

    device: str
    role: str
    total: QualityCounts
    periods: list[QualityCounts]
    #: (start_ns, end_ns, number of intervals) of each run of consecutive missing intervals
    missing_ranges: list[tuple[int, int, int]] = field(default_factory=list)
    missing_ranges_truncated: bool = False


@dataclass(slots=True)
class QualityReport:
    park: str
    start_ns: int
    end_ns: int
    periods: list[tuple[int, int]]
    devices: list[DeviceQuality]
    total: QualityCounts
    #: dead letters of the park that name no registry device (unknown device, bad topic, ...)
    unattributed: QualityCounts
    #: devices with stored intervals that are not in the registry (ignored in the counts)
    unregistered_devices: list[str]
    rejections_truncated: bool = False


def expected_bounds(park: Park, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """The park's intervals whose start lies in `[start_ns, end_ns)`, in time order."""
    return [b for b in iter_interval_bounds(start_ns, end_ns, park) if b[0] >= start_ns]


class _DeviceState:
    __slots__ = ("quality", "run_end", "run_len", "run_start")

    def __init__(self, quality: DeviceQuality) -> None:
        self.quality = quality
        # the open run of missing intervals, as indexes into the expected list
        self.run_start = -1
        self.run_end = -1
        self.run_len = 0


class QualityAccumulator:
    """Counts one park over `[start_ns, end_ns)`; feed it with `add_intervals` window by
    window (windows must not overlap and must come in time order) and `add_deadletters`.

    `periods` (half-open, ascending, covering the window) split every count by the
    period holding the interval's start (a dead letter's receive time); None = one period,
    the window.
    """

    def __init__(
        self,
        park: Park,
        start_ns: int,
        end_ns: int,
        periods: Sequence[tuple[int, int]] | None = None,
        *,
        max_missing_ranges: int = MAX_MISSING_RANGES,
    ) -> None:
        if start_ns >= end_ns:
            raise ValueError("start must be before end")
        self.park = park
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.periods = list(periods) if periods else [(start_ns, end_ns)]
        self._period_starts = [p[0] for p in self.periods]
        bounds = expected_bounds(park, start_ns, end_ns)
        self.expected_starts = [b[0] for b in bounds]
        self._ends = [b[1] for b in bounds]
        self._index = {s: i for i, s in enumerate(self.expected_starts)}
        self._period_of = [self._period_index(s) for s in self.expected_starts]
        expected_per_period = Counter(self._period_of)
        self._max_ranges = max_missing_ranges
        self._devices: dict[str, _DeviceState] = {}
        for device in park.devices:
            periods_counts = [
                QualityCounts(expected_intervals=expected_per_period.get(k, 0))
                for k in range(len(self.periods))
            ]
            q = DeviceQuality(
                device=device.id,
                role=device.role.value,
                total=QualityCounts(expected_intervals=len(bounds)),
                periods=periods_counts,
            )
            self._devices[device.id] = _DeviceState(q)
        self._unattributed = QualityCounts()
        self._unregistered: set[str] = set()
        self._next_index = 0  # expected intervals before this index are settled
        self.rejections_truncated = False

    def _period_index(self, ts_ns: int) -> int:
        return max(0, bisect_right(self._period_starts, ts_ns) - 1)

    def add_intervals(self, lo_ns: int, hi_ns: int, intervals: Iterable[IntervalEnergy]) -> None:
        """Stored intervals whose start is in `[lo_ns, hi_ns)` (the whole of that window)."""
        first = bisect_left(self.expected_starts, lo_ns)
        stop = bisect_left(self.expected_starts, hi_ns)
        if first < self._next_index:
            raise ValueError("windows must not overlap and must come in time order")
        present: dict[str, dict[int, IntervalEnergy]] = {}
        for iv in intervals:
            if not lo_ns <= iv.start_ns < hi_ns:
                continue
            if iv.device not in self._devices:
                self._unregistered.add(iv.device)
                continue
            present.setdefault(iv.device, {})[iv.start_ns] = iv  # last wins, as in storage
        for device_id, state in self._devices.items():
            q = state.quality
            found: list[int] = []
            for start, iv in present.get(device_id, {}).items():
                idx = self._index.get(start)
                period = q.periods[self._period_index(start)]
                if idx is None:
                    q.total.unaligned_intervals += 1
                    period.unaligned_intervals += 1
                    continue
                found.append(idx)
                q.total.count_interval(iv)
                period.count_interval(iv)
            found.sort()
            # walk the window's expected indexes, turning the holes between found ones
            # into missing runs
            cursor = first
            for idx in [*found, stop]:
                if idx > cursor:
                    self._missing(state, cursor, idx)
                cursor = idx + 1
        self._next_index = stop

    def _missing(self, state: _DeviceState, lo: int, hi: int) -> None:
        """Expected intervals lo..hi-1 (indexes) of this device have no data."""
        q = state.quality
        q.total.missing_intervals += hi - lo
        for idx in range(lo, hi):
            q.periods[self._period_of[idx]].missing_intervals += 1
        if state.run_len and state.run_end == lo - 1:
            state.run_end = hi - 1
            state.run_len += hi - lo
        else:
            self._close_run(state)
            state.run_start, state.run_end, state.run_len = lo, hi - 1, hi - lo

    def _close_run(self, state: _DeviceState) -> None:
        if not state.run_len:
            return
        q = state.quality
        if len(q.missing_ranges) < self._max_ranges:
            q.missing_ranges.append(
                (self.expected_starts[state.run_start], self._ends[state.run_end], state.run_len)
            )
        else:
            q.missing_ranges_truncated = True
        state.run_len = 0

    def add_deadletters(self, letters: Iterable[DeadLetter]) -> None:
        """Dead letters of this park received in the window (others are ignored)."""
        for letter in letters:
            if letter.park != self.park.id or not self.start_ns <= letter.received_ns < self.end_ns:
                continue
            state = self._devices.get(letter.device) if letter.device is not None else None
            if state is None:
                self._unattributed.count_rejection(letter)
                continue
            state.quality.total.count_rejection(letter)
            state.quality.periods[self._period_index(letter.received_ns)].count_rejection(letter)

    def report(self) -> QualityReport:
        """The report; expected intervals no window covered count as missing."""
        if self._next_index < len(self.expected_starts):
            self.add_intervals(self.expected_starts[self._next_index], self.end_ns + 1, ())
        devices: list[DeviceQuality] = []
        total = QualityCounts()
        for state in self._devices.values():
            self._close_run(state)
            devices.append(state.quality)
            total.add(state.quality.total)
        total.add(self._unattributed)
        return QualityReport(
            park=self.park.id,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            periods=self.periods,
            devices=devices,
            total=total,
            unattributed=self._unattributed,
            unregistered_devices=sorted(self._unregistered),
            rejections_truncated=self.rejections_truncated,
        )


def build_report(
    park: Park,
    start_ns: int,
    end_ns: int,
    intervals: Iterable[IntervalEnergy],
    deadletters: Iterable[DeadLetter],
    periods: Sequence[tuple[int, int]] | None = None,
) -> QualityReport:
    """The whole report in one call (intervals whose start is in the window, any order)."""
    acc = QualityAccumulator(park, start_ns, end_ns, periods)
    acc.add_intervals(start_ns, end_ns, intervals)
    acc.add_deadletters(deadletters)
    return acc.report()
