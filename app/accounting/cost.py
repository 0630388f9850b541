"""Energy cost per interval under a park's tariff, and what on-site supply saved (docs/cost.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from app.tariffs.models import Schedule, Tariff, TariffRevision

from .buckets import from_ns, to_ns

#: the demand charge is on the maximum average import power over a 15-min clock quarter
DEMAND_WINDOW_NS = 15 * 60 * 1_000_000_000
_UTC = ZoneInfo("UTC")


def month_coverage(lo: datetime, hi: datetime, tz: ZoneInfo) -> dict[str, tuple[int, int]]:
    """Local month → (ns of it inside [lo, hi), ns of the whole month)."""
    out: dict[str, tuple[int, int]] = {}
    day = lo.astimezone(tz).date().replace(day=1)
    lo_ns, hi_ns = to_ns(lo), to_ns(hi)
    while True:
        nxt = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
        m0 = to_ns(datetime.combine(day, time(0), tzinfo=tz))
        m1 = to_ns(datetime.combine(nxt, time(0), tzinfo=tz))
        if m0 >= hi_ns:
            return out
        cov = min(m1, hi_ns) - max(m0, lo_ns)
        if cov > 0:
            out[f"{day.year:04d}-{day.month:02d}"] = (cov, m1 - m0)
        day = nxt


@dataclass(frozen=True, slots=True)
class MonthDemand:
    """The maximum 15-min import demand seen in one local calendar month (of a bucket)."""

    peak_kw: float
    at_ns: int  # start of the demand window with the peak (first one on a tie)
    demand_cny_per_kw: float  # of the revision in force at the peak
    capacity_cny: float  # monthly capacity charge of that revision (price × capacity_kva)

    def beats(self, other: MonthDemand) -> bool:
        return (self.peak_kw, -self.at_ns) > (other.peak_kw, -other.at_ns)


@dataclass(slots=True)
class CostSums:
    """Additive cost quantities of a bucket, plus the month demand peaks (combined by max)."""

    priced_intervals: int = 0
    unpriced_intervals: int = 0  # before the tariff's first revision
    import_kwh: dict[str, float] = field(default_factory=dict)  # by period
    import_cny: dict[str, float] = field(default_factory=dict)  # by period
    export_kwh: float = 0.0
    export_credit_cny: float = 0.0
    green_direct_cny: float = 0.0
    fuel_cny: float = 0.0
    heat_cny: float = 0.0
    certificate_cny: float = 0.0
    saved_renewable_cny: float = 0.0
    saved_green_direct_cny: float = 0.0
    saved_storage_cny: float = 0.0
    #: local month "YYYY-MM" → its demand peak within the bucket
    demand: dict[str, MonthDemand] = field(default_factory=dict)
    #: local month → (ns of it the bucket covers, ns in the whole month); a month's demand
    #: and capacity charges count once it is covered whole (docs/cost.md, "Demand")
    months: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, other: CostSums) -> None:
        """Add `other` into this (never mutates or shares `other`'s containers)."""
        for name in self.__slots__:
            if name in ("import_kwh", "import_cny"):
                mine: dict[str, float] = getattr(self, name)
                for k, v in getattr(other, name).items():
                    mine[k] = mine.get(k, 0.0) + v
            elif name == "demand":
                self.add_demand(other.demand)
            elif name == "months":
                for k, (cov, length) in other.months.items():
                    self.months[k] = (self.months.get(k, (0, length))[0] + cov, length)
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))

    def add_demand(self, months: dict[str, MonthDemand]) -> None:
        for month, md in months.items():
            cur = self.demand.get(month)
            if cur is None or md.beats(cur):
                self.demand[month] = md

    def copy(self) -> CostSums:
        out = CostSums()
        out.add(self)
        return out

    @property
    def import_total_cny(self) -> float:
        return sum(self.import_cny.values())

    @property
    def energy_cny(self) -> float:
        """Everything priced per unit: additive over any bucketing."""
        return (
            self.import_total_cny
            - self.export_credit_cny
            + self.green_direct_cny
            + self.fuel_cny
            + self.heat_cny
            + self.certificate_cny
        )

    def complete(self, month: str) -> bool:
        cov, length = self.months.get(month, (0, 1))
        return cov >= length

    @property
    def demand_charge_cny(self) -> float:
        """Demand charges of the months the bucket covers whole."""
        return sum(
            m.peak_kw * m.demand_cny_per_kw for k, m in self.demand.items() if self.complete(k)
        )

    @property
    def capacity_charge_cny(self) -> float:
        return sum(m.capacity_cny for k, m in self.demand.items() if self.complete(k))

    def fields(self) -> tuple[float | None, dict[str, Any] | None]:
        """(`cost_cny`, the `cost` breakdown) of a bucket; both None without a tariff."""
        if not self.priced_intervals:
            return None, None
        peak = max((m.peak_kw for m in self.demand.values()), default=0.0)
        demand = self.demand_charge_cny
        capacity = self.capacity_charge_cny
        total = self.energy_cny + demand + capacity
        saved = self.saved_renewable_cny + self.saved_green_direct_cny + self.saved_storage_cny
        return total, {
            "energy_cny": self.energy_cny,
            "import_cny": self.import_total_cny,
            "by_period": {
                p: {"kwh": self.import_kwh.get(p, 0.0), "cny": self.import_cny.get(p, 0.0)}
                for p in sorted(self.import_kwh)
            },
            "export_kwh": self.export_kwh,
            "export_credit_cny": self.export_credit_cny,
            "green_direct_cny": self.green_direct_cny,
            "fuel_cny": self.fuel_cny,
            "heat_cny": self.heat_cny,
            "certificate_cny": self.certificate_cny,
            "demand_peak_kw": peak,
            "demand_charge_cny": demand,
            "capacity_charge_cny": capacity,
            "demand_months": {
                k: {
                    "peak_kw": m.peak_kw,
                    "at": from_ns(m.at_ns, _UTC).isoformat(),
                    # the month's charges on the peak seen so far in the bucket
                    "charge_cny": m.peak_kw * m.demand_cny_per_kw + m.capacity_cny,
                    "complete": self.complete(k),
                }
                for k, m in sorted(self.demand.items())
            },
            "saved_cny": {
                "renewable": self.saved_renewable_cny,
                "green_direct": self.saved_green_direct_cny,
                "storage": self.saved_storage_cny,
                "total": saved,
            },
            "unpriced_intervals": self.unpriced_intervals,
        }


@dataclass(frozen=True, slots=True)
class IntervalFlows:
    """The electricity and fuel quantities of one interval that are priced (kWh, m³, GJ)."""

    start_ns: int
    end_ns: int
    grid_import_kwh: float  # I
    grid_export_kwh: float  # X
    renewable_kwh: float  # G
    green_direct_kwh: float  # D
    storage_charge_kwh: float  # C
    storage_discharge_kwh: float  # S
    certificates_applied_kwh: float = 0.0
    fuel: tuple[tuple[str, str, float], ...] = ()  # (fuel, counter, quantity)
    heat_purchased_gj: float = 0.0


class CostMeter:
    """Prices the intervals of one bucketed pass in time order under one tariff.

    `add` prices one interval into a bucket's `CostSums`; the import of each 15-min demand
    window is collected and turned into month peaks by `close` (docs/cost.md, "Demand").
    """

    def __init__(self, tariff: Tariff, tz: ZoneInfo, interval_ns: int) -> None:
        self.tariff = tariff
        self.tz = tz
        self.window_ns = max(DEMAND_WINDOW_NS, interval_ns)
        self._days: dict[date, tuple[TariffRevision, Schedule] | None] = {}
        # (bucket sums id) -> window start -> [import kWh, revision at the window, month]
        self._windows: dict[int, dict[int, tuple[float, TariffRevision, str]]] = {}
        self._sums: dict[int, CostSums] = {}

    def add(self, cs: CostSums, f: IntervalFlows) -> None:
        local = from_ns(f.start_ns, self.tz)
        day = local.date()
        if day not in self._days:
            self._days[day] = self.tariff.day_schedule(day)
        found = self._days[day]
        if found is None:
            cs.unpriced_intervals += 1
            return
        rev, sched = found
        period = sched.period_at(local.hour * 60 + local.minute)
        p = rev.import_cny_per_kwh[period]
        cs.priced_intervals += 1
        e, d = rev.export_cny_per_kwh, rev.green_direct_cny_per_kwh
        i, x, g, dd = f.grid_import_kwh, f.grid_export_kwh, f.renewable_kwh, f.green_direct_kwh
        c, s = f.storage_charge_kwh, f.storage_discharge_kwh
        key = period.value
        cs.import_kwh[key] = cs.import_kwh.get(key, 0.0) + i
        cs.import_cny[key] = cs.import_cny.get(key, 0.0) + i * p
        cs.export_kwh += x
        cs.export_credit_cny += x * e
        cs.green_direct_cny += dd * d
        cs.certificate_cny += f.certificates_applied_kwh / 1000.0 * rev.certificate_cny_per_mwh
        for fuel, counter, qty in f.fuel:
            if fuel == "natural_gas" and counter == "gas_m3":
                cs.fuel_cny += qty * rev.gas_cny_per_m3
            else:
                cs.fuel_cny += qty * rev.fuel_cny_per_unit.get(fuel, 0.0)
        cs.heat_cny += f.heat_purchased_gj * rev.heat_cny_per_gj
        # What it saved against buying the loads' electricity from the grid in the same
        # interval (docs/cost.md, "What it saved"): exports come from renewables first.
        x_ren = min(g, x)
        x_rest = x - x_ren
        cs.saved_renewable_cny += (g - x_ren) * p + x_ren * e
        cs.saved_green_direct_cny += dd * (p - d)
        cs.saved_storage_cny += (s - c - x_rest) * p + x_rest * e
        # demand window
        w0 = f.start_ns - f.start_ns % self.window_ns
        windows = self._windows.setdefault(id(cs), {})
        self._sums[id(cs)] = cs
        prev = windows.get(w0)
        month = f"{local.year:04d}-{local.month:02d}"
        windows[w0] = ((prev[0] if prev else 0.0) + i, prev[1] if prev else rev, month)

    def close(self) -> None:
        """Turn the collected demand windows into the month peaks of each bucket's sums."""
        hours = self.window_ns / 3_600_000_000_000
        for key, windows in self._windows.items():
            cs = self._sums[key]
            months: dict[str, MonthDemand] = {}
            for w0, (kwh, rev, month) in sorted(windows.items()):
                md = MonthDemand(
                    kwh / hours,
                    w0,
                    rev.demand_cny_per_kw_month,
                    rev.capacity_cny_per_kva_month * rev.capacity_kva,
                )
                cur = months.get(month)
                if cur is None or md.beats(cur):
                    months[month] = md
            cs.add_demand(months)
        self._windows.clear()
        self._sums.clear()


def live_price(
    tariff: Tariff, now_ns: int, tz: ZoneInfo, import_kw: float, export_kw: float
) -> dict[str, Any] | None:
    """The `/live` `tariff` object: the period and prices in force now, and the cost rate of
    the present grid flows, CNY/h (None before the tariff's first revision)."""
    local = from_ns(now_ns, tz)
    found = tariff.price_at(local)
    if found is None:
        return None
    rev, period, price = found
    return {
        "name": tariff.name,
        "period": period.value,
        "import_cny_per_kwh": price,
        "export_cny_per_kwh": rev.export_cny_per_kwh,
        "cost_rate_cny_per_h": import_kw * price - export_kw * rev.export_cny_per_kwh,
        "revision_valid_from": rev.valid_from.isoformat(),
        "confirmed": rev.confirmed,
        "source": rev.source,
    }
