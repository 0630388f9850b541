"""Per-interval totals by role: the cacheable first pass over raw interval energies."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.intervals.models import IntervalEnergy
from app.registry.models import SUBMETER_ROLES, Device, Park, Role

from .factors import GJ_PER_KWH

_FUEL_COUNTERS = ("gas_m3", "fuel_kg", "fuel_l")

#: What stands behind a figure (docs/intervals.md): quality category -> the interval flags
#: that put a device-interval in it (`estimated` also comes from `IntervalEnergy.estimated`).
QUALITY_FLAGS: dict[str, frozenset[str]] = {
    "estimated": frozenset(),
    "glitch": frozenset({"glitch", "suspect"}),
    "implausible": frozenset({"implausible"}),
    "conflict": frozenset({"conflict"}),
    "reset": frozenset({"reset", "counter_decrease"}),
}
QUALITY_CATEGORIES: tuple[str, ...] = tuple(QUALITY_FLAGS)


def quality_categories(estimated: bool, flags: Iterable[str]) -> list[str]:
    """The quality categories one interval row of one device falls in."""
    tags = set(flags)
    return [
        name
        for name, wanted in QUALITY_FLAGS.items()
        if (estimated if name == "estimated" else bool(tags & wanted))
    ]


@dataclass(slots=True)
class IntervalTotals:
    """Everything the balance needs from one interval of one park, summed by role.

    Factor-free (quantities, not emissions), so it can be computed once and cached.
    """

    start_ns: int
    end_ns: int
    grid_import_kwh: float = 0.0  # I
    grid_export_kwh: float = 0.0  # X
    renewable_kwh: float = 0.0  # G (pv + wind)
    green_direct_kwh: float = 0.0  # D
    #: storage device id → (charge_kwh, discharge_kwh)
    storage: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: storage device id → state of charge at the interval end, % (when reported)
    storage_soc_pct: dict[str, float] = field(default_factory=dict)
    #: (fuel, counter) → quantity, e.g. ("natural_gas", "gas_m3") → 12.5
    fuel: dict[tuple[str, str], float] = field(default_factory=dict)
    heat_purchased_gj: float = 0.0
    heat_recovered_gj: float = 0.0
    heat_fuel_output_kwh: float = 0.0
    #: hydrogen class → kg
    hydrogen_kg: dict[str, float] = field(default_factory=dict)
    #: sub-meter role → kWh (breakdown only, never in the balance)
    submeter_kwh: dict[str, float] = field(default_factory=dict)
    #: non-sub-meter device-intervals that were measured (not estimated)
    measured: int = 0
    #: non-sub-meter device-intervals present but estimated (gap filled)
    estimated: int = 0
    #: tags from the inputs: "<device>:<flag>"
    flags: tuple[str, ...] = ()
    #: quality category (`QUALITY_CATEGORIES`) -> devices in the balance whose row of this
    #: interval is in it (sorted); categories without any device are left out
    quality: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def storage_charge_kwh(self) -> float:
        return sum(c for c, _ in self.storage.values())

    @property
    def storage_discharge_kwh(self) -> float:
        return sum(s for _, s in self.storage.values())


#: InfluxQL regex over the `flags` field matching every row that is in a quality category
#: besides `estimated` (for a summing loader: read just those rows, they are rare)
QUALITY_FLAGS_REGEX = "|".join(sorted(set().union(*QUALITY_FLAGS.values())))


def add_row_quality(
    total: IntervalTotals, device: str, estimated: bool, flags: Iterable[str]
) -> None:
    """Count one balance device's interval row in `total.quality` (what `interval_totals`
    does per row; for loaders that sum rows elsewhere and read the flagged ones apart)."""
    for name in quality_categories(estimated, flags):
        devices = total.quality.get(name, ())
        if device not in devices:
            total.quality[name] = tuple(sorted((*devices, device)))


def _v(values: Mapping[str, float], key: str) -> float:
    x = values.get(key, 0.0)
    # Interval amounts are never negative (docs/storage.md §1); guard anyway so one bad row cannot
    # create green energy or negative emissions.
    return x if x > 0.0 else 0.0


def _heat_gj(values: Mapping[str, float]) -> float:
    if "heat_gj" in values:
        return _v(values, "heat_gj")
    return _v(values, "heat_kwh") * GJ_PER_KWH


def _add(
    total: IntervalTotals, role: Role, ie: IntervalEnergy, fuel: str | None, h2_class: str | None
) -> None:
    v = ie.values
    if role is Role.GRID:
        total.grid_import_kwh += _v(v, "energy_import_kwh")
        total.grid_export_kwh += _v(v, "energy_export_kwh")
    elif role in (Role.PV, Role.WIND):
        total.renewable_kwh += _v(v, "energy_kwh")
    elif role is Role.GREEN_DIRECT:
        total.green_direct_kwh += _v(v, "energy_import_kwh")
    elif role is Role.STORAGE:
        c0, s0 = total.storage.get(ie.device, (0.0, 0.0))
        total.storage[ie.device] = (
            c0 + _v(v, "energy_charge_kwh"),
            s0 + _v(v, "energy_discharge_kwh"),
        )
        soc = v.get("soc_pct")
        if soc is not None and 0.0 <= soc <= 100.0:
            total.storage_soc_pct[ie.device] = soc
    elif role is Role.HEAT_FUEL:
        assert fuel is not None  # registry guarantees it
        for counter in _FUEL_COUNTERS:
            if counter in v:
                key = (fuel, counter)
                total.fuel[key] = total.fuel.get(key, 0.0) + _v(v, counter)
        total.heat_fuel_output_kwh += _v(v, "heat_kwh")
    elif role is Role.HEAT_PURCHASED:
        total.heat_purchased_gj += _heat_gj(v)
    elif role is Role.HEAT_RECOVERED:
        total.heat_recovered_gj += _heat_gj(v)
    elif role is Role.HYDROGEN:
        assert h2_class is not None
        total.hydrogen_kg[h2_class] = total.hydrogen_kg.get(h2_class, 0.0) + _v(v, "h2_kg")


def _row_key(row: IntervalEnergy) -> tuple[str, bool, tuple[tuple[str, float], ...]]:
    return (row.device, row.estimated, tuple(sorted(row.values.items())))


def _one_per_device(
    rows: list[IntervalEnergy], devices: Mapping[str, Device]
) -> list[IntervalEnergy]:
    """One row per registry device of an interval, in (device, row) order.

    After a device's role is edited, an interval recomputed since is stored under the new
    role tag beside the old row (InfluxDB keys series by tag, so nothing overwrote it): the row
    under the registry role is the current one. Otherwise the first in row order is kept.
    """
    best: dict[str, IntervalEnergy] = {}
    for ie in sorted(rows, key=_row_key):
        dev = devices.get(ie.device)
        if dev is None:
            continue
        kept = best.get(ie.device)
        if kept is None or (kept.role != dev.role.value and ie.role == dev.role.value):
            best[ie.device] = ie
    return sorted(best.values(), key=_row_key)


def interval_totals(intervals: Iterable[IntervalEnergy], park: Park) -> list[IntervalTotals]:
    """Group interval energies by interval and sum them by role, sorted by interval start.

    The device's role comes from the registry (`park`), not from the row. Rows of another park
    or of a device not in the registry are skipped. Sub-meters (`load`, `ev_charger`,
    `electrolyzer`, `heat_pump`) only go to `submeter_kwh`. One row per device and interval
    counts (`_one_per_device`). Rows are summed in (device, row) order so the result does not
    depend on input order.
    """
    groups: dict[tuple[int, int], list[IntervalEnergy]] = defaultdict(list)
    for ie in intervals:
        if ie.park != park.id:
            continue
        groups[(ie.start_ns, ie.end_ns)].append(ie)
    devices = park.device_map
    out: list[IntervalTotals] = []
    for start_ns, end_ns in sorted(groups):
        rows = _one_per_device(groups[(start_ns, end_ns)], devices)
        total = IntervalTotals(start_ns, end_ns)
        flags: list[str] = []
        for ie in rows:
            dev = devices.get(ie.device)
            if dev is None:
                continue
            flags.extend(f"{ie.device}:{f}" for f in ie.flags)
            if dev.role in SUBMETER_ROLES:
                key = dev.role.value
                total.submeter_kwh[key] = total.submeter_kwh.get(key, 0.0) + _v(
                    ie.values, "energy_import_kwh"
                )
                continue
            if ie.estimated:
                total.estimated += 1
            else:
                total.measured += 1
            add_row_quality(total, ie.device, ie.estimated, ie.flags)
            _add(
                total,
                dev.role,
                ie,
                dev.fuel.value if dev.fuel else None,
                dev.h2_class.value if dev.h2_class else None,
            )
        total.flags = tuple(sorted(set(flags)))
        out.append(total)
    return out


def expected_devices(park: Park) -> int:
    """Devices expected to report every interval for completeness: all non-sub-meters."""
    return sum(1 for d in park.devices if d.role not in SUBMETER_ROLES)
