"""Pure application of manual corrections to interval energies (raw rows are never mutated)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.corrections.models import Correction
from app.intervals.align import interval_bounds, iter_interval_bounds
from app.intervals.models import IntervalEnergy
from app.registry.models import COUNTER_QUANTITIES, Park

#: Flag added to every interval a correction changed or created.
CORRECTED_FLAG = "corrected"


def check_correction(
    park: Park, device: str, quantity: str, start_ns: int, end_ns: int
) -> str | None:
    """Why this correction cannot apply to `park` (None when it can)."""
    if park.device_map.get(device) is None:
        return f"unknown device {device!r} in park {park.id!r}"
    if quantity not in COUNTER_QUANTITIES:
        return f"quantity must be a counter ({', '.join(sorted(COUNTER_QUANTITIES))})"
    if start_ns >= end_ns:
        return "start must be before end"
    if interval_bounds(start_ns, park)[0] != start_ns or interval_bounds(end_ns, park)[0] != end_ns:
        return f"start and end must be interval boundaries ({park.interval_minutes} min, local)"
    return None


def _with_flag(flags: tuple[str, ...]) -> tuple[str, ...]:
    return flags if CORRECTED_FLAG in flags else tuple(sorted((*flags, CORRECTED_FLAG)))


def apply_corrections(
    intervals: Iterable[IntervalEnergy], corrections: Sequence[Correction], park: Park
) -> list[IntervalEnergy]:
    """`intervals` with `park`'s corrections applied in `seq` order, as new rows.

    Each correction's amount is spread over every interval of its window in proportion to the
    interval's length; an interval with no stored row for the device gets a new row (marked
    `estimated`: nothing was measured there). A `set` replaces the device's value in each of
    those intervals by its share; an `add` adds its share (a result below zero is clamped to
    zero, as interval values are never negative). Changed or created rows carry the
    `corrected` flag. Other devices, quantities and parks pass through unchanged. The result is
    sorted by (start_ns, device).
    """
    rows = list(intervals)
    mine = sorted((c for c in corrections if c.park == park.id), key=lambda c: (c.seq, c.id))
    if not mine:
        return rows
    # One working row per (device, start); duplicates stay separate and untouched except the
    # first, which carries the correction (a `set` zeroes the quantity in the others).
    groups: dict[tuple[str, int], list[int]] = {}
    for i, r in enumerate(rows):
        if r.park == park.id:
            groups.setdefault((r.device, r.start_ns), []).append(i)
    values = [dict(r.values) for r in rows]
    touched: set[int] = set()
    for c in mine:
        dev = park.device_map.get(c.device)
        if dev is None:
            continue
        span = c.end_ns - c.start_ns
        for lo, hi in iter_interval_bounds(c.start_ns, c.end_ns, park):
            share = c.amount * (hi - lo) / span
            group = groups.get((c.device, lo))
            if group is None:
                rows.append(
                    IntervalEnergy(park.id, c.device, dev.role.value, lo, hi, {}, estimated=True)
                )
                values.append({})
                group = groups[(c.device, lo)] = [len(rows) - 1]
            i = group[0]
            if c.kind == "set":
                values[i][c.quantity] = share
                for j in group[1:]:
                    if c.quantity in values[j]:
                        values[j][c.quantity] = 0.0
                        touched.add(j)
            else:
                values[i][c.quantity] = max(0.0, values[i].get(c.quantity, 0.0) + share)
            touched.add(i)
    out = [
        IntervalEnergy(
            r.park,
            r.device,
            r.role,
            r.start_ns,
            r.end_ns,
            values[i],
            r.estimated,
            _with_flag(r.flags),
        )
        if i in touched
        else r
        for i, r in enumerate(rows)
    ]
    out.sort(key=lambda r: (r.start_ns, r.device))
    return out
