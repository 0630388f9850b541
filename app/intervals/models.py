"""Interval energy: what one device's counters advanced by in one aligned interval."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class IntervalEnergy:
    """Energy (and other counter quantities) of one device in one interval.

    `start_ns`/`end_ns` are UTC epoch nanoseconds of the interval, aligned to the park's local
    time zone. `values` maps a counter name (`energy_import_kwh`, `gas_m3`, `heat_gj`, ...)
    to the amount in that interval (never negative). `estimated` is true when part of the
    amount was spread over a gap in the readings. `flags` are sorted tags such as `reset`,
    `implausible`, `counter_decrease`, `gap` that explain what happened in the interval.
    """

    park: str
    device: str
    role: str
    start_ns: int
    end_ns: int
    values: dict[str, float] = field(hash=False)
    estimated: bool = False
    flags: tuple[str, ...] = ()
