"""Result types of the balance: the docs/api.md §4 `/balance` fields per bucket and in total."""

from __future__ import annotations

from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from .certificates import CertificateUse
from .cost import CostSums
from .storage import StorageDeviceState
from .totals import QUALITY_CATEGORIES

#: docs/api.md §4 field names, in contract order.
BALANCE_FIELDS: tuple[str, ...] = (
    "consumption_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "renewable_kwh",
    "green_direct_kwh",
    "green_physical_kwh",
    "green_market_kwh",
    "green_share_physical",
    "green_share_market",
    "scope1_kg",
    "scope2_location_kg",
    "scope2_market_kg",
    "heat_purchased_kg",
    "offsets_kg",
    "net_kg",
    "energy_tce",
    "tco2_per_tce",
    "completeness",
)


@dataclass(slots=True)
class Sums:
    """Additive quantities of a bucket (or the total). Ratios are derived in `BalanceFields`."""

    consumption_kwh: float = 0.0
    boundary_consumption_kwh: float = 0.0
    grid_import_kwh: float = 0.0
    grid_export_kwh: float = 0.0
    renewable_kwh: float = 0.0
    self_consumed_renewable_kwh: float = 0.0
    green_direct_kwh: float = 0.0
    green_physical_kwh: float = 0.0
    green_market_kwh: float = 0.0
    certificates_applied_kwh: float = 0.0
    storage_charge_kwh: float = 0.0
    storage_discharge_kwh: float = 0.0
    storage_losses_kwh: float = 0.0
    storage_untracked_kwh: float = 0.0
    unbalanced_kwh: float = 0.0
    scope1_kg: float = 0.0
    scope2_location_kg: float = 0.0
    scope2_market_kg: float = 0.0
    heat_purchased_kg: float = 0.0
    heat_purchased_gj: float = 0.0
    heat_recovered_gj: float = 0.0
    hydrogen_kg: float = 0.0  # kgCO2 attributed to hydrogen (not in net_kg, docs/accounting.md)
    h2_consumed_kg: float = 0.0
    avoided_kg: float = 0.0
    offsets_kg: float = 0.0
    energy_kgce: float = 0.0
    measured_intervals: int = 0
    estimated_intervals: int = 0
    expected_intervals: int = 0
    submeter_kwh: dict[str, float] = field(default_factory=dict)
    #: quality category -> device-intervals in it (docs/intervals.md, "Quality")
    quality_intervals: dict[str, int] = field(default_factory=dict)
    #: quality category -> the devices behind those intervals
    quality_devices: dict[str, set[str]] = field(default_factory=dict)
    #: cost under the park's tariff (docs/cost.md); empty without a tariff
    cost_sums: CostSums = field(default_factory=CostSums)

    def add_quality(self, quality: dict[str, tuple[str, ...]]) -> None:
        """Count one interval's `IntervalTotals.quality`."""
        for name, devices in quality.items():
            self.quality_intervals[name] = self.quality_intervals.get(name, 0) + len(devices)
            self.quality_devices.setdefault(name, set()).update(devices)

    def add(self, other: Sums) -> None:
        """Add `other` into this (never mutates or shares `other`'s containers)."""
        for name in _SCALAR_SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.submeter_kwh.items():
            self.submeter_kwh[k] = self.submeter_kwh.get(k, 0.0) + v
        for k, n in other.quality_intervals.items():
            self.quality_intervals[k] = self.quality_intervals.get(k, 0) + n
        for k, devs in other.quality_devices.items():
            self.quality_devices.setdefault(k, set()).update(devs)
        self.cost_sums.add(other.cost_sums)


#: the plain numbers of `Sums` (every field but its containers), added one by one
_SCALAR_SUMS = tuple(
    f.name
    for f in fields(Sums)
    if f.name not in ("submeter_kwh", "quality_intervals", "quality_devices", "cost_sums")
)


def quality_summary(intervals: dict[str, int], devices: dict[str, set[str]]) -> dict[str, Any]:
    """The `quality` object of a bucket or total: every category, even when empty."""
    out: dict[str, Any] = {
        name: {"intervals": intervals.get(name, 0), "devices": sorted(devices.get(name, ()))}
        for name in QUALITY_CATEGORIES
    }
    out["repaired"] = any(intervals.get(name, 0) for name in QUALITY_CATEGORIES)
    return out


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 1e-9 else None


def _share(num: float, den: float) -> float | None:
    r = _ratio(num, den)
    return None if r is None else min(1.0, max(0.0, r))


@dataclass(frozen=True, slots=True)
class BalanceFields:
    """The `/balance` fields of one bucket or of the total (docs/api.md §4), plus useful extras.

    Shares are None when consumption is 0 (no meaningful share), `tco2_per_tce` is None when
    energy_tce is 0, `completeness` is None when no device-interval was expected.
    """

    consumption_kwh: float
    grid_import_kwh: float
    grid_export_kwh: float
    renewable_kwh: float
    green_direct_kwh: float
    green_physical_kwh: float
    green_market_kwh: float
    green_share_physical: float | None
    green_share_market: float | None
    scope1_kg: float
    scope2_location_kg: float
    scope2_market_kg: float
    heat_purchased_kg: float
    offsets_kg: float
    net_kg: float
    energy_tce: float
    tco2_per_tce: float | None
    completeness: float | None
    # extras
    boundary_consumption_kwh: float
    self_consumed_renewable_kwh: float
    certificates_applied_kwh: float
    storage_charge_kwh: float
    storage_discharge_kwh: float
    storage_losses_kwh: float
    storage_untracked_kwh: float
    unbalanced_kwh: float
    heat_purchased_gj: float
    heat_recovered_gj: float
    hydrogen_kg: float
    h2_consumed_kg: float
    avoided_kg: float
    net_location_kg: float
    tco2_per_tce_before_offsets: float | None
    measured_intervals: int
    estimated_intervals: int
    expected_intervals: int
    submeter_kwh: dict[str, float]
    #: what stands behind the figures: per category (`estimated`, `glitch`, `implausible`,
    #: `conflict`, `reset`) the device-intervals in it and the devices, e.g.
    #: {"glitch": {"intervals": 1, "devices": ["grid-main"]}, ...}; `repaired` says whether
    #: any figure rests on such an interval
    quality: dict[str, Any]
    #: what the energy cost under the park's tariff, CNY (docs/cost.md): energy priced per
    #: kWh, m³, GJ and MWh of certificates, less export credit, plus the demand or capacity
    #: charges of the local months the bucket covers whole; None when the park has no tariff
    cost_cny: float | None
    #: its breakdown: import by period, export credit, fuels, heat, certificates, demand,
    #: and what on-site renewables, direct green supply and storage saved (docs/cost.md)
    cost: dict[str, Any] | None
    #: the additive sums behind `cost` (not in the JSON body)
    cost_sums: CostSums

    @property
    def quality_intervals(self) -> dict[str, int]:
        """`Sums.quality_intervals` back from `quality` (a fresh dict)."""
        return {n: self.quality[n]["intervals"] for n in QUALITY_CATEGORIES if n in self.quality}

    @property
    def quality_devices(self) -> dict[str, set[str]]:
        """`Sums.quality_devices` back from `quality` (fresh sets)."""
        return {n: set(self.quality[n]["devices"]) for n in QUALITY_CATEGORIES if n in self.quality}

    @classmethod
    def from_sums(cls, s: Sums) -> BalanceFields:
        cost_cny, cost = s.cost_sums.fields()
        gross_kg = s.scope1_kg + s.scope2_market_kg + s.heat_purchased_kg
        net_kg = gross_kg - s.offsets_kg
        energy_tce = s.energy_kgce / 1000.0
        return cls(
            consumption_kwh=s.consumption_kwh,
            grid_import_kwh=s.grid_import_kwh,
            grid_export_kwh=s.grid_export_kwh,
            renewable_kwh=s.renewable_kwh,
            green_direct_kwh=s.green_direct_kwh,
            green_physical_kwh=s.green_physical_kwh,
            green_market_kwh=s.green_market_kwh,
            green_share_physical=_share(s.green_physical_kwh, s.consumption_kwh),
            green_share_market=_share(s.green_market_kwh, s.consumption_kwh),
            scope1_kg=s.scope1_kg,
            scope2_location_kg=s.scope2_location_kg,
            scope2_market_kg=s.scope2_market_kg,
            heat_purchased_kg=s.heat_purchased_kg,
            offsets_kg=s.offsets_kg,
            net_kg=net_kg,
            energy_tce=energy_tce,
            tco2_per_tce=_ratio(net_kg / 1000.0, energy_tce),
            completeness=(
                min(1.0, s.measured_intervals / s.expected_intervals)
                if s.expected_intervals
                else None
            ),
            boundary_consumption_kwh=s.boundary_consumption_kwh,
            self_consumed_renewable_kwh=s.self_consumed_renewable_kwh,
            certificates_applied_kwh=s.certificates_applied_kwh,
            storage_charge_kwh=s.storage_charge_kwh,
            storage_discharge_kwh=s.storage_discharge_kwh,
            storage_losses_kwh=s.storage_losses_kwh,
            storage_untracked_kwh=s.storage_untracked_kwh,
            unbalanced_kwh=s.unbalanced_kwh,
            heat_purchased_gj=s.heat_purchased_gj,
            heat_recovered_gj=s.heat_recovered_gj,
            hydrogen_kg=s.hydrogen_kg,
            h2_consumed_kg=s.h2_consumed_kg,
            avoided_kg=s.avoided_kg,
            net_location_kg=s.scope1_kg + s.scope2_location_kg + s.heat_purchased_kg - s.offsets_kg,
            tco2_per_tce_before_offsets=_ratio(gross_kg / 1000.0, energy_tce),
            measured_intervals=s.measured_intervals,
            estimated_intervals=s.estimated_intervals,
            expected_intervals=s.expected_intervals,
            submeter_kwh=dict(s.submeter_kwh),
            quality=quality_summary(s.quality_intervals, s.quality_devices),
            cost_cny=cost_cny,
            cost=cost,
            cost_sums=s.cost_sums.copy(),
        )

    def as_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (contract fields first), without `cost_sums`."""
        return {f: _copied(getattr(self, f)) for f in _FIELD_NAMES}


_FIELD_NAMES = tuple(f.name for f in fields(BalanceFields) if f.name != "cost_sums")


def _copied(v: Any) -> Any:
    """`deepcopy` for the plain values of a result (dicts, lists, tuples, sets, scalars), at
    a fraction of its cost: a year of daily buckets is 365 of these per answer."""
    t = type(v)
    if t is dict:
        return {k: _copied(x) for k, x in v.items()}
    if t is list or t is tuple or t is set:
        return t(_copied(x) for x in v)
    if t is str or t is int or t is float or t is bool or v is None:
        return v
    return deepcopy(v)


@dataclass(frozen=True, slots=True)
class BucketBalance:
    """One bucket: [start, end) in the park's time zone and its fields."""

    start: datetime
    end: datetime
    fields: BalanceFields


@dataclass(frozen=True, slots=True)
class BalanceResult:
    """What `compute_balance` returns: buckets, total, the certificate trail, the end state."""

    park: str
    factor_set: str
    start: datetime
    end: datetime
    every: str
    buckets: tuple[BucketBalance, ...]
    total: BalanceFields
    #: certificate uses inside [start, end) (the full trail from the earliest input is in
    #: `certificate_trail_all`)
    certificate_trail: tuple[CertificateUse, ...]
    certificate_trail_all: tuple[CertificateUse, ...]
    #: certificate id → kWh used up to `end`
    certificates_used_kwh: dict[str, float]
    #: storage state at `end` (pass as `initial_storage` to continue from here)
    storage_state: dict[str, StorageDeviceState]
    #: storage state at `start`
    storage_state_at_start: dict[str, StorageDeviceState]
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready body of `/balance` (docs/api.md §4) with the trail; datetimes as RFC 3339."""
        return {
            "park": self.park,
            "factor_set": self.factor_set,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "every": self.every,
            "buckets": [
                {"start": b.start.isoformat(), "end": b.end.isoformat(), **b.fields.as_dict()}
                for b in self.buckets
            ],
            "total": self.total.as_dict(),
            "certificate_trail": [asdict(u) for u in self.certificate_trail],
            "warnings": list(self.warnings),
        }
