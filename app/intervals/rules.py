"""Segment rules: how one counter step (t0,v0) -> (t1,v1) becomes an amount plus quality flags.

Thresholds (also in docs/intervals.md):

- reset: the later reading has `reset=True`, or the counter fell to near zero, i.e.
  `v0 > 0 and v1 <= RESET_NEAR_ZERO_FRACTION * v0` (1 %): the new counter counts from zero,
  amount = max(v1, 0). A replaced meter starts at (or near) 0 and has advanced a little
  by its first reading; a real meter fault or a gateway mix-up rarely lands that low.
- counter_decrease: any other decrease: amount 0, the lower value is the new baseline.
- implausible: for kWh counters (`*_kwh`, and `heat_gj` at 277.78 kWh/GJ) of a device with
  `max_kw`: amount_kwh > max_kw * (dt_s + JITTER_ALLOWANCE_S) / 3600 + QUANTUM_ALLOWANCE_KWH.
  The segment's amount is dropped (0) and flagged. Later segments count normally from v1.
- gap: the segment lasts longer than GAP_FACTOR (1.5) x the park's interval length: its
  amount is still spread linearly, and every interval it overlaps is `estimated`.
"""

from __future__ import annotations

from typing import Final

RESET_NEAR_ZERO_FRACTION: Final = 0.01
GAP_FACTOR: Final = 1.5
#: Timestamp jitter allowance: a device may look max_kw x 60 s more energetic than it is.
JITTER_ALLOWANCE_S: Final = 60.0
#: Register resolution allowance: coarse (1 kWh) registers tick a whole kWh at once.
QUANTUM_ALLOWANCE_KWH: Final = 1.0
KWH_PER_GJ: Final = 1e6 / 3600.0  # 277.777... kWh per GJ

# Flag bits; the names are the tags in IntervalEnergy.flags.
F_RESET: Final = 1
F_DECREASE: Final = 2
F_IMPLAUSIBLE: Final = 4
F_GAP: Final = 8
FLAG_NAMES: Final = (
    (F_DECREASE, "counter_decrease"),
    (F_GAP, "gap"),
    (F_IMPLAUSIBLE, "implausible"),
    (F_RESET, "reset"),
)  # alphabetical, so IntervalEnergy.flags come out sorted


def kwh_factor(quantity: str) -> float | None:
    """kWh per unit of a counter, or None when it is not an energy quantity."""
    if quantity == "heat_gj":
        return KWH_PER_GJ
    if quantity.endswith("_kwh"):
        return 1.0
    return None


def classify_segment(
    v0: float,
    v1: float,
    reset1: bool,
    dt_ns: int,
    gap_ns: int,
    factor_kwh: float | None,
    max_kw: float | None,
) -> tuple[float, int]:
    """Amount (>= 0, in the counter's unit) and flag bits of one segment of duration dt_ns."""
    flags = 0
    if reset1 or (v0 > 0.0 and v1 < v0 and v1 <= RESET_NEAR_ZERO_FRACTION * v0):
        amount = max(v1, 0.0)
        flags |= F_RESET
    elif v1 < v0:
        amount = 0.0
        flags |= F_DECREASE
    else:
        amount = v1 - v0
    if dt_ns > gap_ns:
        flags |= F_GAP
    if factor_kwh is not None and max_kw is not None and amount > 0.0:
        limit_kwh = max_kw * (dt_ns / 1e9 + JITTER_ALLOWANCE_S) / 3600.0 + QUANTUM_ALLOWANCE_KWH
        if amount * factor_kwh > limit_kwh:
            amount = 0.0
            flags |= F_IMPLAUSIBLE
    return amount, flags
