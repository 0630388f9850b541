"""Segment rules: how one counter step (t0,v0) -> (t1,v1) becomes an amount plus quality flags.

Thresholds (also in docs/intervals.md):

- reset: the later reading has `reset=True`, or the counter fell to near zero, i.e.
  `v0 > 0 and v1 <= RESET_NEAR_ZERO_FRACTION * v0` (1 %): the new counter counts from zero,
  amount = max(v1, 0). A replaced meter starts at (or near) 0 and has advanced a little
  by its first reading; a real meter fault or a gateway mix-up rarely lands that low.
- counter_decrease: any other decrease: amount 0, the lower value is the new baseline.
- implausible: amount_kwh > bound_kw * (dt_s + JITTER_ALLOWANCE_S) / 3600 + QUANTUM_ALLOWANCE_KWH,
  where `bound_kw` is the device's plausibility bound (`plausibility_bound`: registry `max_kw`,
  else its parent meter's, else a role default) and amount_kwh the amount at its energy
  content (`*_kwh` 1, `heat_gj` 277.78 kWh/GJ; fuels and hydrogen at a low heating value, for
  the role default only). The segment's amount is dropped (0) and flagged.
- gap: the segment lasts longer than GAP_FACTOR (1.5) x the park's interval length: its
  amount is still spread linearly, and every interval it overlaps is `estimated`.
"""

from __future__ import annotations

from typing import Final

from app.registry.models import Device, Park

RESET_NEAR_ZERO_FRACTION: Final = 0.01
GAP_FACTOR: Final = 1.5
#: Timestamp jitter allowance: a device may look max_kw x 60 s more energetic than it is.
JITTER_ALLOWANCE_S: Final = 60.0
#: Register resolution allowance: coarse (1 kWh) registers tick a whole kWh at once.
QUANTUM_ALLOWANCE_KWH: Final = 1.0
KWH_PER_GJ: Final = 1e6 / 3600.0  # 277.777... kWh per GJ
#: The reading after a suspect one decides glitch versus reset only if it comes within this
#: long; a later one leaves a drop a reset (a replaced meter may well climb back by then).
GLITCH_DECIDE_S: Final = 6 * 3600

# Flag bits; the names are the tags in IntervalEnergy.flags.
F_RESET: Final = 1
F_DECREASE: Final = 2
F_IMPLAUSIBLE: Final = 4
F_GAP: Final = 8
F_GLITCH: Final = 16
F_SUSPECT: Final = 32
FLAG_NAMES: Final = (
    (F_DECREASE, "counter_decrease"),
    (F_GAP, "gap"),
    (F_GLITCH, "glitch"),
    (F_IMPLAUSIBLE, "implausible"),
    (F_RESET, "reset"),
    (F_SUSPECT, "suspect"),
)  # alphabetical, so IntervalEnergy.flags come out sorted

#: Plausibility bound (kW) of a device without `max_kw` (itself or its parent meter): far
#: above any one device of the largest parks (1 M tce/year is about 0.9 GW on average), far
#: below what a glitch implies (a 681 MWh counter read as 0 and back is 2.7 GW over 15 min).
ROLE_DEFAULT_MAX_KW: Final[dict[str, float]] = {
    "grid": 2_000_000.0,
    "green_direct": 2_000_000.0,
    "pv": 1_000_000.0,
    "wind": 1_000_000.0,
    "storage": 1_000_000.0,
    "load": 1_000_000.0,
    "ev_charger": 200_000.0,
    "electrolyzer": 1_000_000.0,
    "heat_pump": 500_000.0,
    "heat_fuel": 2_000_000.0,
    "heat_purchased": 2_000_000.0,
    "heat_recovered": 2_000_000.0,
    "hydrogen": 2_000_000.0,
}
#: Energy content used only to bound non-energy counters by the role default, at a low
#: heating value (so the bound errs on the lenient side): natural gas ~ 9 kWh/m3, fuel by
#: mass ~ 8 kWh/kg (raw coal; oil is ~ 12), fuel by volume ~ 9 kWh/l, hydrogen 33.3 kWh/kg.
FUEL_KWH_PER_UNIT: Final[dict[str, float]] = {
    "gas_m3": 9.0,
    "fuel_kg": 8.0,
    "fuel_l": 9.0,
    "h2_kg": 33.3,
}


def kwh_factor(quantity: str) -> float | None:
    """kWh per unit of a counter, or None when it is not an energy quantity."""
    if quantity == "heat_gj":
        return KWH_PER_GJ
    if quantity.endswith("_kwh"):
        return 1.0
    return None


def plausibility_kwh_factor(quantity: str, from_registry: bool) -> float | None:
    """kWh per unit for the plausibility check: energy counters always; fuel and hydrogen
    counters only against the role default (a registry `max_kw` is an electric or thermal
    rating, not a fuel input)."""
    factor = kwh_factor(quantity)
    if factor is None and not from_registry:
        return FUEL_KWH_PER_UNIT.get(quantity)
    return factor


def is_glitch(
    v_prev: float,
    v: float,
    v_next: float,
    reset: bool,
    reset_next: bool,
    dt_next_ns: int,
    decide_ns: int,
) -> bool:
    """A reading off the trajectory its two neighbours agree on: its next reading (within
    `decide_ns`) is back at or above the previous value while the reading itself fell below
    the previous value (a drop) or rose above the next one (a spike). `reset` is authoritative."""
    if reset or reset_next or dt_next_ns > decide_ns:
        return False
    return v_next >= v_prev and (v < v_prev or v > v_next)


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


def plausibility_bound(park: Park, device: Device) -> tuple[float, bool]:
    """`(bound_kw, from_registry)` of a device's counters: its registry `max_kw`, else that of
    the meter it is `included_in` (a sub-meter cannot exceed its parent), else the role
    default. The device's own history is deliberately not used: a bound learnt from history
    would depend on how much history an engine holds, so results would change on restart."""
    if device.max_kw is not None:
        return device.max_kw, True
    if device.included_in is not None:
        parent = park.device(device.included_in)
        if parent is not None and parent.max_kw is not None:
            return parent.max_kw, True
    return ROLE_DEFAULT_MAX_KW.get(device.role.value, 2_000_000.0), False
