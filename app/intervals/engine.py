# Long module: counter state per device and the engine over it change together.
"""Counter readings -> per-device interval energies: batch reference and incremental engine.

Each (device, counter) is a time-sorted series of points. A segment between consecutive points
is classified by `rules.classify_segment` and its amount spread linearly in time over the
intervals it overlaps. Each interval keeps the portion of every overlapping segment, keyed by
the segment's start, and its value is `math.fsum` of those portions: exactly rounded, so the
result does not depend on the order in which readings arrived (the engine equals the batch
`compute_intervals` bit for bit). Inserting a point replaces one segment by two; only the
intervals those segments overlap are rebuilt.

A segment's amount also depends on whether its end points are glitches (`rules.is_glitch`,
decided by each point's two raw neighbours), so segment k (point k-1 to point k) depends on
points k-2 .. k+1: inserting a point rebuilds the up to four segments whose window holds it.
Segment flags are kept per segment start, so removing a segment takes off what was added.

Duplicates (same device, same ts): per counter, the first value (and `reset`) held stays, in
arrival order; a later differing one changes nothing (the collector keeps it as a conflict
record, docs/intervals.md); identical duplicates change nothing.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from app.intervals.align import interval_bounds, interval_ns
from app.intervals.models import IntervalEnergy
from app.intervals.rules import (
    F_GAP,
    F_GLITCH,
    F_IMPLAUSIBLE,
    F_SUSPECT,
    FLAG_NAMES,
    GAP_FACTOR,
    GLITCH_DECIDE_S,
    classify_segment,
    is_glitch,
    plausibility_bound,
    plausibility_kwh_factor,
)
from app.registry.models import COUNTER_QUANTITIES, Device, Park
from app.telemetry.models import Reading

#: `horizon()` of a device whose complete history the engine holds: every reading is exact.
HORIZON_ALL = -(2**63)
#: `horizon()` when no reading can be handled exactly yet (history too short after a seed).
HORIZON_NONE = 2**63 - 1

_N_FLAGS = len(FLAG_NAMES)  # counters per cell: one per flag bit, then one for estimated


@dataclass(slots=True)
class _Series:
    """One counter of one device: sorted timestamps with their values and reset marks."""

    ts: list[int] = field(default_factory=list)
    vals: list[float] = field(default_factory=list)
    resets: list[bool] = field(default_factory=list)
    #: flags of each segment held in the cells, by the segment's start ts
    seg_flags: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Cell:
    """One interval of one device: the portion of every segment overlapping it."""

    end_ns: int
    parts: dict[str, dict[int, float]] = field(default_factory=dict)
    counts: list[int] = field(default_factory=lambda: [0] * (_N_FLAGS + 1))


class _DeviceState:
    """Series and interval cells of one device.

    `origin` means the held series are the device's whole history (nothing earlier exists).
    Otherwise each series is a contiguous suffix of the real one: its first point's
    predecessor is unknown, and with it whether that point was a glitch, which decides the
    segment after it; so only intervals starting at or after the latest second point
    (`exact_from`) are exactly known and ever reported. `floor_ns`: a counter without a
    series has no reading at or after it but those the engine is given, so such a counter may
    start a series there (the earliest seeded reading; anywhere once a device held whole was
    pruned); pruning, which drops points of held series only, leaves it.
    """

    __slots__ = (
        "_factors",
        "_last_bounds",
        "bound_kw",
        "bound_registry",
        "cells",
        "conflicts",
        "decide_ns",
        "device",
        "emitted",
        "floor_ns",
        "gap_ns",
        "newest_ns",
        "next_trim",
        "origin",
        "park",
        "series",
    )

    def __init__(self, park: Park, device: Device, origin: bool) -> None:
        self.park = park
        self.device = device
        self.origin = origin
        self.bound_kw, self.bound_registry = plausibility_bound(park, device)
        self._factors: dict[str, float | None] = {}
        self.gap_ns = int(GAP_FACTOR * interval_ns(park))
        self.decide_ns = max(self.gap_ns, GLITCH_DECIDE_S * 1_000_000_000)
        self.series: dict[str, _Series] = {}
        self.cells: dict[int, _Cell] = {}
        self.emitted: dict[int, IntervalEnergy] = {}
        #: conflicting readings the collector refused, by interval start (`IntervalEngine.conflict`)
        self.conflicts: dict[int, int] = {}
        self.newest_ns = -(2**63)
        self.next_trim = 0  # held points at which `trim` looks again (compact engines)
        self.floor_ns = HORIZON_NONE  # lowered by whoever loads the history
        self._last_bounds = (0, 0)

    # -- alignment -------------------------------------------------------------------------

    def _bounds(self, ts_ns: int) -> tuple[int, int]:
        start, end = self._last_bounds
        if start <= ts_ns < end:
            return start, end
        bounds = interval_bounds(ts_ns, self.park)
        self._last_bounds = bounds
        return bounds

    # -- segments --------------------------------------------------------------------------

    def _glitch(self, s: _Series, k: int) -> bool:
        """Point k is a glitch (decided by its raw neighbours; the first point never is)."""
        if k <= 0 or k + 1 >= len(s.ts):
            return False
        vals = s.vals
        if vals[k - 1] <= vals[k] <= vals[k + 1]:
            return False  # on the way from one neighbour to the other: the common case
        return is_glitch(
            s.vals[k - 1],
            s.vals[k],
            s.vals[k + 1],
            s.resets[k],
            s.resets[k + 1],
            s.ts[k + 1] - s.ts[k],
            self.decide_ns,
        )

    def _classify(
        self, quantity: str, s: _Series, k: int, g0: bool | None = None
    ) -> tuple[float, int]:
        """Amount and flags of segment k (point k-1 to point k), from points k-2 .. k+1.

        `g0`: whether point k-1 is a glitch, when the caller already knows.
        """
        ts, vals = s.ts, s.vals
        dt = ts[k] - ts[k - 1]
        factor = self._factors.get(quantity, 0.0)
        if factor == 0.0:
            factor = self._factors[quantity] = plausibility_kwh_factor(
                quantity, self.bound_registry
            )
        if g0 is None:
            g0 = self._glitch(s, k - 1)
        g1 = k + 1 < len(ts) and self._glitch(s, k)
        if not (g0 or g1):
            if k == len(ts) - 1 and vals[k] < vals[k - 1] and not s.resets[k]:
                # a drop the next reading has yet to decide: glitch or reset
                return 0.0, F_SUSPECT | (F_GAP if dt > self.gap_ns else 0)
            return classify_segment(
                vals[k - 1], vals[k], s.resets[k], dt, self.gap_ns, factor, self.bound_kw
            )
        flags = F_GLITCH | (F_GAP if dt > self.gap_ns else 0)
        if g0 and g1:
            return 0.0, flags
        # bridge the glitch: the step between its neighbours, spread over both segments
        a, b = (k - 1, k + 1) if g1 else (k - 2, k)
        span = ts[b] - ts[a]
        amount, bridged = classify_segment(
            vals[a], vals[b], False, span, self.gap_ns, factor, self.bound_kw
        )
        flags |= bridged & F_IMPLAUSIBLE
        return (amount if span == dt else amount * dt / span), flags

    def _segment(
        self,
        quantity: str,
        s: _Series,
        i: int,
        touched: set[int],
        sign: int,
        g0: bool | None = None,
    ) -> None:
        """Add (sign=+1) or remove (sign=-1) the segment from point i-1 to point i."""
        t0, t1 = s.ts[i - 1], s.ts[i]
        dt = t1 - t0
        if sign > 0:
            if g0 is False and i == len(s.ts) - 1 and s.vals[i] >= s.vals[i - 1]:
                # appended on the trajectory (the common case): a plain segment
                factor = self._factors.get(quantity, 0.0)
                if factor == 0.0:
                    factor = self._factors[quantity] = plausibility_kwh_factor(
                        quantity, self.bound_registry
                    )
                amount, flags = classify_segment(
                    s.vals[i - 1], s.vals[i], s.resets[i], dt, self.gap_ns, factor, self.bound_kw
                )
            else:
                amount, flags = self._classify(quantity, s, i, g0)
            if flags:  # absent means 0
                s.seg_flags[t0] = flags
        else:
            amount, flags = 0.0, s.seg_flags.pop(t0, 0)
        estimated = bool(flags & F_GAP) and not flags & F_IMPLAUSIBLE
        cells = self.cells
        t = t0
        while t < t1:
            start, end = self._last_bounds  # the hot path: `_bounds` inlined
            if not start <= t < end:
                start, end = self._bounds(t)
            cell = cells.get(start)
            if sign > 0:
                if cell is None:
                    cell = cells[start] = _Cell(end)
                overlap = (end if end < t1 else t1) - t
                portion = amount if overlap == dt else amount * overlap / dt
                parts = cell.parts.get(quantity)
                if parts is None:
                    cell.parts[quantity] = {t0: portion}
                else:
                    parts[t0] = portion
            elif cell is not None:
                parts = cell.parts.get(quantity)
                if parts is not None:
                    parts.pop(t0, None)
                    if not parts:
                        del cell.parts[quantity]
            if cell is not None:
                if flags:
                    counts = cell.counts
                    for bit in range(_N_FLAGS):
                        if flags >> bit & 1:
                            counts[bit] += sign
                    if estimated:
                        counts[_N_FLAGS] += sign
                touched.add(start)
            t = end

    def _append_plain(self, quantity: str, s: _Series, touched: set[int]) -> bool:
        """`_segment(+1)` of a just-appended point on the trajectory, when the segment gets no
        flag and lies in one interval (nearly every reading); False: nothing done, the
        caller takes the general path. The same rule (`classify_segment`) decides."""
        ts = s.ts
        t1 = ts[-1]
        t0 = ts[-2]
        start, end = self._last_bounds
        if not (start <= t0 and t1 <= end):
            return False
        factor = self._factors.get(quantity, 0.0)
        if factor == 0.0:
            factor = self._factors[quantity] = plausibility_kwh_factor(
                quantity, self.bound_registry
            )
        vals = s.vals
        amount, flags = classify_segment(
            vals[-2], vals[-1], s.resets[-1], t1 - t0, self.gap_ns, factor, self.bound_kw
        )
        if flags:
            return False
        cell = self.cells.get(start)
        if cell is None:
            cell = self.cells[start] = _Cell(end)
        parts = cell.parts.get(quantity)
        if parts is None:
            cell.parts[quantity] = {t0: amount}
        else:
            parts[t0] = amount
        touched.add(start)
        return True

    def insert(
        self,
        quantity: str,
        ts_ns: int,
        value: float,
        reset: bool,
        touched: set[int],
        allow_before: bool,
    ) -> bool:
        """Insert one point; False when it lies before the held history.

        A point at a held ts changes nothing (the first one stays). Segments i-1 .. i+2 of
        the new point's index i are the ones whose four-point window holds it.
        """
        s = self.series.get(quantity)
        if s is None:
            if not allow_before and ts_ns < self.floor_ns:
                return False  # older readings of this counter may exist but are not held
            s = self.series[quantity] = _Series()
        ts = s.ts
        n = len(ts)
        if n and ts_ns > ts[-1]:  # the common case: appending in time order
            ts.append(ts_ns)
            s.vals.append(value)
            s.resets.append(reset)
            # the old last segment changes only if the new point makes its end a glitch or
            # decides its suspect drop (its flags were stored when it was added)
            vals = s.vals
            glitch = n > 1 and not vals[n - 2] <= vals[n - 1] <= value and self._glitch(s, n - 1)
            if n > 1 and (glitch or s.seg_flags.get(ts[n - 2], 0) & F_SUSPECT):
                self._segment(quantity, s, n - 1, touched, -1)
                self._segment(quantity, s, n - 1, touched, +1)
            if not glitch and value >= vals[n - 1] and self._append_plain(quantity, s, touched):
                return True
            self._segment(quantity, s, n, touched, +1, glitch)
            return True
        i = n if not n else bisect_left(ts, ts_ns)
        if i < n and ts[i] == ts_ns:
            return True  # duplicate: the first one stays
        if i == 0 and n and not allow_before:
            return False
        for k in range(max(1, i - 1), min(n - 1, i + 1) + 1):
            self._segment(quantity, s, k, touched, -1)
        ts.insert(i, ts_ns)
        s.vals.insert(i, value)
        s.resets.insert(i, reset)
        for k in range(max(1, i - 1), min(n, i + 2) + 1):
            self._segment(quantity, s, k, touched, +1)
        return True

    def add_reading(self, reading: Reading, touched: set[int], allow_before: bool) -> int:
        """Insert the counters of one reading; returns how many were before the history."""
        stale = 0
        for quantity, value in reading.values.items():
            if quantity in COUNTER_QUANTITIES and not self.insert(
                quantity, reading.ts_ns, float(value), reading.reset, touched, allow_before
            ):
                stale += 1
        if reading.ts_ns > self.newest_ns:
            self.newest_ns = reading.ts_ns
        return stale

    def mark_conflict(self, ts_ns: int) -> int:
        """Count a refused conflicting reading at `ts_ns`; returns its interval's start."""
        start = self._bounds(ts_ns)[0]
        # kept apart from the cells, which a compact engine forgets long before the window
        self.conflicts[start] = self.conflicts.get(start, 0) + 1
        return start

    # -- results ---------------------------------------------------------------------------

    def exact_from(self) -> int:
        """Intervals starting at or after this instant are exactly known."""
        if self.origin or not self.series:
            return HORIZON_ALL
        # the first held point may have been a glitch (its predecessor is unknown), which
        # changes the segment after it: exact from each series' second point on
        # (a lone point is taken as it is: nothing after it is held yet)
        return max(s.ts[1] if len(s.ts) > 1 else s.ts[0] for s in self.series.values() if s.ts)

    def build(self, start_ns: int) -> IntervalEnergy | None:
        cell = self.cells.get(start_ns)
        if cell is None or not cell.parts:
            return None
        counts = cell.counts
        flags = [name for bit, name in FLAG_NAMES if counts[bit.bit_length() - 1] > 0]
        if self.conflicts.get(start_ns):
            flags = sorted([*flags, "conflict"])
        return IntervalEnergy(
            park=self.park.id,
            device=self.device.id,
            role=self.device.role.value,
            start_ns=start_ns,
            end_ns=cell.end_ns,
            values={q: math.fsum(parts.values()) for q, parts in sorted(cell.parts.items())},
            estimated=counts[_N_FLAGS] > 0,
            flags=tuple(flags),
        )

    def results(self, starts: Iterable[int]) -> list[IntervalEnergy]:
        """The exactly known intervals among `starts`, in time order."""
        floor = self.exact_from()
        out = []
        for start in sorted(starts):
            if start >= floor:
                energy = self.build(start)
                if energy is not None:
                    out.append(energy)
        return out

    def horizon(self, strict: bool = False) -> int:
        """Readings at or after this instant are handled exactly.

        `strict` (compact engines, whose history is short): a point right after the first
        point `p` of a whole interval changes the segment before `p` (through `p`'s glitch
        decision), which reaches into the interval before, not exactly known: exact only
        after the point following `p` (and not at all while `p` is a counter's last point).
        """
        if self.origin:
            return HORIZON_ALL
        floor = self.exact_from()
        start, end = interval_bounds(floor, self.park)
        aligned = floor if start == floor else end
        firsts = []
        for s in self.series.values():
            i = bisect_left(s.ts, aligned)
            if strict and i < len(s.ts):
                if i + 1 == len(s.ts):
                    return HORIZON_NONE
                i += 1
            if i < len(s.ts):
                firsts.append(s.ts[i])
        return max(firsts) + 1 if firsts else HORIZON_NONE

    def prune(self, window_ns: int, slack_ns: int) -> None:
        """Forget points older than newest - window (keeping each series' last older point)."""
        cutoff = self.newest_ns - window_ns
        if not any(s.ts and s.ts[0] < cutoff - slack_ns for s in self.series.values()):
            return
        self._drop_before(cutoff, window_ns)

    def trim(self, window_ns: int) -> None:
        """Compact engines: forget every point no in-order reading can need any more.

        The next reading of a counter changes at most its last segment and the new one, so
        the intervals from the one holding the counter's second-to-last point on. Those stay
        exactly known as long as every series keeps its second point at or before the start
        of the earliest such interval of the device (`reach`): each series keeps its last
        point at or before `reach` and the one before that (whose glitch decision its successor
        needs), and everything after. History older than the window goes in any case (a
        counter that stopped reporting). Looks again only after as many points again as it
        kept (at least 16), so the work per reading stays constant.
        """
        held = 0
        for s in self.series.values():
            held += len(s.ts)
        if held < self.next_trim:
            return
        self.next_trim = held + max(16, held)
        reach = HORIZON_NONE
        for s in self.series.values():
            if len(s.ts) > 1:
                reach = min(reach, self._bounds(s.ts[-2])[0])
        cutoff = HORIZON_NONE
        for s in self.series.values():
            j = bisect_right(s.ts, reach) - 1  # the last point at or before `reach`
            if s.ts:
                cutoff = min(cutoff, s.ts[j] if j > 0 else s.ts[0])
        cutoff = max(cutoff, self.newest_ns - window_ns)
        for s in self.series.values():
            if not s.ts:
                continue
            k = max(bisect_left(s.ts, cutoff) - 1, 0)  # the first point kept
            second = s.ts[k + 1] if k + 1 < len(s.ts) else s.ts[k]
            if second > reach:
                return  # e.g. a counter's lone new point: wait for it to get older
        self._drop_before(cutoff, window_ns)
        held = 0
        for s in self.series.values():
            held += len(s.ts)
        self.next_trim = held + max(16, held)

    def _drop_before(self, cutoff: int, window_ns: int) -> None:
        """Forget points older than `cutoff`, keeping each series' last point before it, and
        conflict marks older than the window."""
        sink: set[int] = set()
        pruned = False
        drop = {}  # per series, the index of its last point before the cutoff (the first kept)
        keep_from = HORIZON_NONE  # no kept segment starts before this
        for quantity, s in self.series.items():
            if not s.ts:
                continue
            k = bisect_left(s.ts, cutoff) - 1
            if k > 0:
                drop[quantity] = k
            keep_from = min(keep_from, s.ts[max(k, 0)])
        if not drop:
            return
        # Cells wholly before the interval of `keep_from` hold parts of dropped segments only:
        # they go whole. The dropped segments' parts in later cells stay: each dropped
        # segment ends at or before its series' new first point, so every cell it touches
        # starts before `exact_from` and is never reported again (and goes whole at a later
        # pruning); taking them off part by part cost a segment walk per dropped point.
        keep_start = interval_bounds(keep_from, self.park)[0]
        for start in [st for st in self.cells if st < keep_start]:
            del self.cells[start]
        for quantity, k in drop.items():
            s = self.series[quantity]
            for i in range(1, k + 1):
                s.seg_flags.pop(s.ts[i - 1], None)
            del s.ts[:k], s.vals[:k], s.resets[:k]
            # segments 1, 2 looked at the dropped points: rebuild them (never emitted again)
            for i in range(1, min(2, len(s.ts) - 1) + 1):
                self._segment(quantity, s, i, sink, -1)
                self._segment(quantity, s, i, sink, +1)
            pruned = True
        if not pruned:
            return
        # `floor_ns` stays: pruning drops points of held series only, so a counter without a
        # series still has no reading at or after it but those that arrive (raising it to the
        # cutoff refused them, yet emitted the intervals they touch without them). A device
        # held whole until now had no reading of such a counter at all.
        if self.origin:
            self.floor_ns = HORIZON_ALL
        self.origin = False
        # Only cells no held segment overlaps go (every segment leaves a part, maybe 0.0, in
        # each cell it overlaps). A cell before `exact_from` may still hold a segment whose
        # points are both held, e.g. a long gap of one counter: a late reading that splits it
        # takes its portion and flags off that cell again, and a late reading that lowers
        # `exact_from` makes the cell reportable, with every held segment's part in it.
        for start in [st for st, cell in self.cells.items() if not cell.parts]:
            del self.cells[start]
        floor = self.exact_from()
        for start in [st for st in self.emitted if st < floor]:
            del self.emitted[start]
        for start in [st for st in self.conflicts if st < self.newest_ns - window_ns]:
            del self.conflicts[start]


#: How many interval lengths before a device's newest stored reading the collector loads its
#: history from (docs/intervals.md, "Collector protocol"): the segment after a point depends
#: on the two points before it, so the history must reach two readings before that point's
#: interval, which three interval lengths do for any device reporting once per interval.
HISTORY_INTERVALS = 3


def history_start_ns(ts_ns: int, park: Park) -> int:
    """Where the stored history to seed (or recompute) a device from starts, given the ts of
    its newest stored reading before the new ones: the start of the interval holding
    `ts_ns - HISTORY_INTERVALS` interval lengths."""
    return interval_bounds(ts_ns - HISTORY_INTERVALS * interval_ns(park), park)[0]


def _device_states(
    readings: Iterable[Reading], park: Park, origin: bool
) -> dict[str, _DeviceState]:
    ordered = sorted((r for r in readings if r.park == park.id), key=lambda r: r.ts_ns)
    states: dict[str, _DeviceState] = {}
    sink: set[int] = set()
    for reading in ordered:  # stable sort: duplicates keep arrival order, so the last wins
        state = states.get(reading.device)
        if state is None:
            device = park.device(reading.device)
            if device is None:
                continue
            state = states[reading.device] = _DeviceState(park, device, origin)
        state.add_reading(reading, sink, allow_before=True)
    return states


def compute_intervals(readings: Sequence[Reading], park: Park) -> list[IntervalEnergy]:
    """Batch reference: every interval of every device of `park` covered by `readings`.

    The readings are taken as the devices' whole history. Readings of other parks and of
    devices not in the registry are ignored. Sorted by (device, start_ns).
    """
    out: list[IntervalEnergy] = []
    for _, state in sorted(_device_states(readings, park, origin=True).items()):
        out.extend(state.results(state.cells))
    return out


def compute_window(
    readings: Sequence[Reading],
    park: Park,
    start_ns: int,
    end_ns: int,
    whole_history: bool = False,
) -> list[IntervalEnergy]:
    """Intervals overlapping [start_ns, end_ns) that `readings` determine exactly.

    For recomputing a window from storage: `readings` must hold, per device, every reading
    from its earliest one in the list onward (older history may exist and is unknown). An
    interval is returned only if it starts at or after the second point of every counter of
    its device, so the unknown segment before those points cannot have touched it.
    `whole_history`: nothing older exists, so every interval is exact.
    """
    out: list[IntervalEnergy] = []
    for _, state in sorted(_device_states(readings, park, origin=whole_history).items()):
        starts = [s for s, c in state.cells.items() if s < end_ns and c.end_ns > start_ns]
        out.extend(state.results(starts))
    return out


class IntervalEngine:
    """Incremental interval energies for a stream of readings, at most once per interval/call.

    - A device seen first through `add` (horizon None) is taken to have no earlier history.
      The collector must therefore `seed` stored history of a device whose `horizon` is None
      before `add`-ing its readings.
    - `seed(readings)` loads history without emitting: per device, the caller promises the
      readings are every stored reading from the earliest one given onward.
    - Readings older than the first held point of a counter (for a counter without a series:
      older than the device's held floor) are not stored and nothing is emitted for them
      (`stale_readings` counts them). Readings in [first point, horizon) are
      stored, and only exactly known intervals are emitted; the collector recomputes that
      window with `compute_window` over readings loaded from storage.
    - History older than `history_window_s` behind a device's newest reading is pruned; the
      last point before the cutoff is kept so the segment across it stays known.
    - `compact`: hold per device only what the next in-order reading needs (`trim`: a
      counter's last points, the intervals they can still change, an undecided suspect
      drop); `history_window_s` then only bounds counters that stopped reporting. Anything
      older is the caller's fallback from storage, as after a restart (docs/intervals.md,
      "Collector memory").
    """

    def __init__(
        self,
        registry_lookup: Callable[[str], Park | None],
        history_window_s: int = 2 * 86400,
        *,
        compact: bool = False,
    ) -> None:
        self._lookup = registry_lookup
        self._window_ns = history_window_s * 1_000_000_000
        self._compact = compact
        self._states: dict[tuple[str, str], _DeviceState] = {}
        self.stale_readings = 0
        self.unknown_readings = 0

    def _feed(
        self, readings: Iterable[Reading], seeding: bool, whole: bool = False
    ) -> dict[tuple[str, str], set[int]]:
        parks: dict[str, Park | None] = {}
        touched: dict[tuple[str, str], set[int]] = {}
        last: tuple[str, str, _DeviceState, set[int]] | None = None
        for reading in readings:
            if last is not None and reading.device == last[1] and reading.park == last[0]:
                # a gateway's array: the same device as the reading before
                held = last[2]
                if seeding and reading.ts_ns < held.floor_ns:
                    held.floor_ns = reading.ts_ns
                if held.add_reading(reading, last[3], seeding or held.origin):
                    self.stale_readings += 1
                continue
            key = (reading.park, reading.device)
            state = self._states.get(key)
            if state is None:
                if reading.park not in parks:
                    parks[reading.park] = self._lookup(reading.park)
                park = parks[reading.park]
                device = park.device(reading.device) if park is not None else None
                if park is None or device is None:
                    self.unknown_readings += 1
                    continue
                state = self._states[key] = _DeviceState(park, device, origin=whole or not seeding)
            cells = touched.get(key)
            if cells is None:
                cells = touched[key] = set()
            allow_before = seeding or state.origin
            if seeding and reading.ts_ns < state.floor_ns:
                state.floor_ns = reading.ts_ns
            if state.add_reading(reading, cells, allow_before):
                self.stale_readings += 1
            last = (reading.park, reading.device, state, cells)
        return touched

    def _prune(self, keys: Iterable[tuple[str, str]]) -> None:
        # only after the batch's results are built: a batch reaching further back than the
        # window (a gateway flushing days of buffered readings) must still emit all of them
        if self._compact:
            for key in keys:
                self._states[key].trim(self._window_ns)
            return
        slack = max(self._window_ns // 8, 3600 * 1_000_000_000)
        for key in keys:
            self._states[key].prune(self._window_ns, slack)

    def add(
        self, readings: Iterable[Reading], conflicts: Iterable[tuple[str, str, int]] = ()
    ) -> list[IntervalEnergy]:
        """Take new readings; return the intervals whose values changed, each in full, once.

        `conflicts`: (park, device, ts_ns) of readings of the same batch the collector refused
        as conflicting (`conflict`); their intervals are flagged before the engine forgets
        anything after the batch, so an interval the batch fills is emitted flagged even
        when a compact engine no longer holds it afterwards.
        """
        out: list[IntervalEnergy] = []
        touched = self._feed(readings, seeding=False)
        for park, device, ts_ns in conflicts:
            key = (park, device)
            state = self._states.get(key)
            if state is not None:
                start = state.mark_conflict(ts_ns)
                touched.setdefault(key, set()).add(start)
        for key, starts in touched.items():
            state = self._states[key]
            for energy in state.results(starts):
                if state.emitted.get(energy.start_ns) != energy:
                    state.emitted[energy.start_ns] = energy
                    out.append(energy)
        self._prune(touched)
        return out

    def seed(self, readings: Iterable[Reading], whole_history: bool = False) -> None:
        """Load stored history (e.g. after a restart) without emitting anything.

        `whole_history`: nothing older than these readings exists for their devices (storage
        had no reading before them), so their first points are known not to be glitches.
        """
        touched = self._feed(readings, seeding=True, whole=whole_history)
        for key, starts in touched.items():
            state = self._states[key]
            for energy in state.results(starts):
                state.emitted[energy.start_ns] = energy
        self._prune(touched)

    def horizon(self, park: str, device: str) -> int | None:
        """Readings of the device with `ts_ns >= horizon` are handled exactly by `add`.

        None: the engine knows nothing of the device (seed it from storage first).
        `HORIZON_ALL`: the engine holds its whole history. `HORIZON_NONE`: no reading is
        handled exactly yet (the seeded history does not reach a whole interval).
        """
        state = self._states.get((park, device))
        return None if state is None else state.horizon(strict=self._compact)

    def held(self, park: str, device: str, ts_ns: int) -> dict[str, tuple[float, bool]]:
        """The counter values (and reset marks) held for the device at exactly `ts_ns` (a new
        dict the caller may change)."""
        state = self._states.get((park, device))
        if state is None or ts_ns > state.newest_ns:
            return {}  # the common case: newer than anything held
        out: dict[str, tuple[float, bool]] = {}
        for quantity, s in state.series.items():
            ts = s.ts
            if not ts or ts_ns > ts[-1] or ts_ns < ts[0]:
                continue
            i = bisect_left(ts, ts_ns)
            if ts[i] == ts_ns:
                out[quantity] = (s.vals[i], s.resets[i])
        return out

    def conflict(self, park: str, device: str, ts_ns: int) -> list[IntervalEnergy]:
        """Flag the interval holding a refused conflicting reading `conflict`; returns it when
        it is exactly known (to be written), else nothing.

        The mark lives in the engine only, for the history window: an interval recomputed
        from storage (`compute_window`) carries it through `with_conflicts` while the engine
        holds it; the conflict record itself is stored.
        """
        state = self._states.get((park, device))
        if state is None:
            return []
        start = state.mark_conflict(ts_ns)
        out = state.results([start])
        for energy in out:
            state.emitted[energy.start_ns] = energy
        return out

    def restore_conflict(self, park: str, device: str, start_ns: int) -> None:
        """Mark the interval starting at `start_ns` `conflict` again, emitting nothing: its
        stored row carries the flag (e.g. after a restart, whose engine holds no marks)."""
        state = self._states.get((park, device))
        if state is not None and not state.conflicts.get(start_ns):
            state.conflicts[start_ns] = 1

    def with_conflicts(self, intervals: Iterable[IntervalEnergy]) -> list[IntervalEnergy]:
        """`intervals` (e.g. recomputed from storage) with the `conflict` flag added where the
        engine holds a refused conflicting reading (within the history window)."""
        out = []
        for energy in intervals:
            state = self._states.get((energy.park, energy.device))
            if (
                state is not None
                and state.conflicts.get(energy.start_ns)
                and "conflict" not in energy.flags
            ):
                flags = tuple(sorted([*energy.flags, "conflict"]))
                energy = msgspec.structs.replace(energy, flags=flags)
            out.append(energy)
        return out

    def held_sizes(self, park: str, device: str) -> tuple[int, int]:
        """What the engine holds of a device: (counter points, interval cells)."""
        state = self._states.get((park, device))
        if state is None:
            return 0, 0
        return sum(len(s.ts) for s in state.series.values()), len(state.cells)

    def forget(self, park: str, device: str) -> None:
        """Drop all state of a device (e.g. after its registry entry changed)."""
        self._states.pop((park, device), None)
