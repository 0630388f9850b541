"""The park balance: sequential pass over interval totals, bucketed to the park's local calendar."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time

from app.intervals.models import IntervalEnergy
from app.registry.models import Park, Role

from .buckets import Every, bucket_edges, to_ns
from .certificates import allocate_certificates
from .cost import CostMeter, IntervalFlows, month_coverage
from .factors import FactorSet
from .flows import Supply, allocate
from .ledger_types import Certificate, Offset
from .result import BalanceFields, BalanceResult, BucketBalance, Sums
from .storage import StorageDeviceState, StorageStep, begin_step, finish_step
from .totals import IntervalTotals, expected_devices, interval_totals


@dataclass(frozen=True, slots=True)
class IntervalBalance:
    """The electricity result of one interval (kWh) and the storage steps behind it."""

    start_ns: int
    end_ns: int
    consumption_kwh: float  # loads + storage losses
    boundary_consumption_kwh: float  # I + D + G − X
    self_consumed_renewable_kwh: float
    green_physical_kwh: float
    green_market_kwh: float
    certificates_applied_kwh: float
    storage_losses_kwh: float
    storage_untracked_kwh: float
    unbalanced_kwh: float
    export_green_physical_kwh: float  # green leaving in exports beyond on-site generation
    storage: tuple[StorageStep, ...]
    #: storage devices active in the interval whose content was not observed (no SoC)
    unobserved_storage: tuple[str, ...] = ()


#: a storage device of one interval: id, charge kWh, discharge kWh, state before, observed
_Net = tuple[str, float, float, StorageDeviceState, bool]


def _begin_storage(
    t: IntervalTotals,
    state: dict[str, StorageDeviceState],
    capacities: Mapping[str, float | None],
) -> tuple[list[_Net], float, float, float, float]:
    """Each storage device of `t` (sorted) with whether its content is observed, and the
    park's net charge, net discharge and green (physical, market) given back, in kWh."""
    nets: list[_Net] = []
    s_net_total = c_net_total = out_p_total = out_m_total = 0.0
    for dev in sorted(t.storage):
        c, s = t.storage[dev]
        st = state.get(dev, StorageDeviceState())
        observed = capacities.get(dev) is not None and t.storage_soc_pct.get(dev) is not None
        c_net, s_net, _from, _untr, out_p, out_m = begin_step(c, s, st)
        nets.append((dev, c, s, st, observed))
        c_net_total += c_net
        s_net_total += s_net
        out_p_total += out_p
        out_m_total += out_m
    return nets, c_net_total, s_net_total, out_p_total, out_m_total


def _bounded_green(consumption: float, green_p: float, green_m: float) -> tuple[float, float]:
    """Green (physical, market) kWh of an interval with storage whose content is not observed.

    What was counted when charged and what leaves later differ in timing, and the green
    share of stored energy that leaves the park is not known for sure: never more green
    than consumed, and energy given back beyond what the park consumed is taken off as
    if all green (docs/accounting.md §2, "Storage without state of charge").
    """
    if consumption >= 0.0:
        market = min(max(green_m, 0.0), consumption)
        # what leaves carries its market share, which may exceed the physical one (charged
        # under certificates no longer in force): never more physical green than market
        return min(max(green_p, 0.0), consumption, market), market
    return consumption, consumption


def step_interval(
    t: IntervalTotals,
    state: dict[str, StorageDeviceState],
    capacities: Mapping[str, float | None],
    certified_kwh: float = 0.0,
) -> IntervalBalance:
    """Electricity balance of one interval with storage provenance; updates `state` in place.

    Every storage device keeps its content and green share (well mixed). One whose content
    is observed in the interval (a capacity and an end-of-interval `soc_pct`) has its
    losses measured, and they are consumption. One whose content is not observed falls back
    to the boundary identity (docs/accounting.md §2, "Storage without state of charge"):
    its net charge counts as consumed when charged, with its green share, and its net
    discharge is taken off consumption and green again at the share it carries.
    """
    nets, c_net_total, s_net_total, out_p_total, out_m_total = _begin_storage(t, state, capacities)
    flows = allocate(
        Supply(
            t.grid_import_kwh, t.grid_export_kwh, t.renewable_kwh, t.green_direct_kwh, certified_kwh
        ),
        c_net_total,
        s_net_total,
        out_p_total,
        out_m_total,
    )
    steps: list[StorageStep] = []
    losses = untracked = loss_p = loss_m = 0.0
    consumption = flows.loads
    green_p, green_m = flows.loads_green_physical, flows.loads_green_market
    blind: list[str] = []
    for dev, c, s, st, observed in nets:
        step = finish_step(
            dev,
            c,
            s,
            st,
            flows.charge_green_physical,
            flows.charge_green_market,
            capacities.get(dev) if observed else None,
            t.storage_soc_pct.get(dev) if observed else None,
        )
        state[dev] = step.after
        steps.append(step)
        untracked += step.untracked_kwh
        if observed:
            losses += step.losses_kwh
            loss_p += step.green_losses_physical_kwh
            loss_m += step.green_losses_market_kwh
        elif c or s:
            # Content not observed: the net charge is consumed when charged, with its green
            # share, and what the device gives back later is taken off again (it reached
            # the loads, or left, counted already): the boundary identity.
            blind.append(dev)
            d_in = step.charge_kwh - step.passthrough_kwh
            d_out = step.discharge_kwh - step.passthrough_kwh
            consumption += d_in - d_out
            green_p += step.green_charged_physical_kwh - step.green_discharged_physical_kwh
            green_m += step.green_charged_market_kwh - step.green_discharged_market_kwh
    consumption += losses
    green_p += loss_p
    green_m += loss_m
    if blind:
        green_p, green_m = _bounded_green(consumption, green_p, green_m)
    boundary = t.grid_import_kwh + t.green_direct_kwh + t.renewable_kwh - t.grid_export_kwh
    return IntervalBalance(
        start_ns=t.start_ns,
        end_ns=t.end_ns,
        consumption_kwh=consumption,
        boundary_consumption_kwh=boundary,
        self_consumed_renewable_kwh=flows.self_consumed_renewable,
        green_physical_kwh=green_p,
        green_market_kwh=green_m,
        certificates_applied_kwh=min(certified_kwh, t.grid_import_kwh),
        storage_losses_kwh=losses,
        storage_untracked_kwh=untracked,
        unbalanced_kwh=flows.unbalanced,
        export_green_physical_kwh=flows.export_green_physical,
        storage=tuple(steps),
        unobserved_storage=tuple(blind),
    )


def _add_interval(
    s: Sums,
    t: IntervalTotals,
    ib: IntervalBalance,
    fs: FactorSet,
    ef_grid: float,
    warnings: set[str],
) -> None:
    """Add one interval's quantities, emissions and standard coal to the bucket sums `s`."""
    s.consumption_kwh += ib.consumption_kwh
    s.boundary_consumption_kwh += ib.boundary_consumption_kwh
    s.grid_import_kwh += t.grid_import_kwh
    s.grid_export_kwh += t.grid_export_kwh
    s.renewable_kwh += t.renewable_kwh
    s.self_consumed_renewable_kwh += ib.self_consumed_renewable_kwh
    s.green_direct_kwh += t.green_direct_kwh
    s.green_physical_kwh += ib.green_physical_kwh
    s.green_market_kwh += ib.green_market_kwh
    s.certificates_applied_kwh += ib.certificates_applied_kwh
    s.storage_losses_kwh += ib.storage_losses_kwh
    s.storage_untracked_kwh += ib.storage_untracked_kwh
    s.unbalanced_kwh += ib.unbalanced_kwh
    for c, d in t.storage.values():
        s.storage_charge_kwh += c
        s.storage_discharge_kwh += d
    s.scope2_location_kg += t.grid_import_kwh * ef_grid
    s.scope2_market_kg += (t.grid_import_kwh - ib.certificates_applied_kwh) * fs.residual.value
    s.avoided_kg += min(t.renewable_kwh, t.grid_export_kwh) * ef_grid
    kgce = ib.consumption_kwh * fs.electricity_coal.value
    for (fuel, counter), qty in t.fuel.items():
        try:
            ff = fs.fuel_factors(fuel, counter)
        except ValueError as exc:
            warnings.add(str(exc))
            continue
        s.scope1_kg += qty * ff.co2.value
        kgce += qty * ff.coal.value
    if t.heat_purchased_gj:
        s.heat_purchased_gj += t.heat_purchased_gj
        s.heat_purchased_kg += t.heat_purchased_gj * fs.heat.value
        kgce += t.heat_purchased_gj * fs.heat_coal.value
    s.heat_recovered_gj += t.heat_recovered_gj
    for cls, kg in t.hydrogen_kg.items():
        s.h2_consumed_kg += kg
        try:
            s.hydrogen_kg += kg * fs.hydrogen_factor(cls).value
        except ValueError as exc:
            warnings.add(str(exc))
    s.energy_kgce += kgce
    s.measured_intervals += t.measured
    s.estimated_intervals += t.estimated
    if t.quality:
        s.add_quality(t.quality)
    for role, kwh in t.submeter_kwh.items():
        s.submeter_kwh[role] = s.submeter_kwh.get(role, 0.0) + kwh


def _flows(t: IntervalTotals, ib: IntervalBalance) -> IntervalFlows:
    return IntervalFlows(
        start_ns=t.start_ns,
        end_ns=t.end_ns,
        grid_import_kwh=t.grid_import_kwh,
        grid_export_kwh=t.grid_export_kwh,
        renewable_kwh=t.renewable_kwh,
        green_direct_kwh=t.green_direct_kwh,
        storage_charge_kwh=t.storage_charge_kwh,
        storage_discharge_kwh=t.storage_discharge_kwh,
        certificates_applied_kwh=ib.certificates_applied_kwh,
        fuel=tuple((f, c, q) for (f, c), q in sorted(t.fuel.items())),
        heat_purchased_gj=t.heat_purchased_gj,
    )


def _offset_instant(offset: Offset, park: Park) -> int:
    local_midnight = datetime.combine(offset.date, time(0), tzinfo=park.tz)
    return to_ns(local_midnight.astimezone(UTC))


def _totals_before(
    intervals: Iterable[IntervalEnergy] | Sequence[IntervalTotals], park: Park, end_ns: int
) -> list[IntervalTotals]:
    """The park's interval totals starting before `end_ns`, in time order."""
    items = list(intervals)
    totals: list[IntervalTotals]
    if items and isinstance(items[0], IntervalTotals):
        totals = sorted(
            (x for x in items if isinstance(x, IntervalTotals)), key=lambda t: t.start_ns
        )
    else:
        totals = interval_totals((x for x in items if isinstance(x, IntervalEnergy)), park)
    return [t for t in totals if t.start_ns < end_ns]


def _empty_buckets(
    edges: list[tuple[datetime, datetime]], park: Park, interval_ns: int
) -> list[Sums]:
    """One `Sums` per bucket, holding only the device-intervals the bucket should have."""
    sums = [Sums() for _ in edges]
    n_expected = expected_devices(park)
    for k, (lo, hi) in enumerate(edges):
        span = to_ns(hi) - to_ns(lo)
        sums[k].expected_intervals = n_expected * math.ceil(span / interval_ns)
    return sums


def _add_offsets(
    bucket_sums: list[Sums],
    bucket_starts: list[int],
    offsets: Iterable[Offset],
    park: Park,
    start_ns: int,
    end_ns: int,
) -> None:
    for off in offsets:
        if off.park != park.id:
            continue
        at = _offset_instant(off, park)
        # Counted at the local midnight starting its date, so the bucket is the one containing
        # that day's start, whatever the bucketing (totals stay equal across `every`).
        if start_ns <= at < end_ns:
            bucket_sums[bisect_right(bucket_starts, at) - 1].offsets_kg += off.tco2 * 1000.0


_UNOBSERVED = (
    "storage {dev}: no state of charge (soc_pct with capacity_kwh), so its losses"
    " are not observed; consumption follows the boundary identity (net charge"
    " counted when charged)"
)


def _close_cost(
    meter: CostMeter,
    edges: list[tuple[datetime, datetime]],
    bucket_sums: list[Sums],
    park: Park,
    warnings: set[str],
) -> None:
    """Finish the cost of every bucket: the months it covers whole (demand charges)."""
    meter.close()
    for (lo, hi), s in zip(edges, bucket_sums, strict=True):
        s.cost_sums.months = month_coverage(lo, hi, park.tz)
    if any(s.cost_sums.unpriced_intervals for s in bucket_sums):
        warnings.add("tariff: intervals before its first revision are not priced (docs/cost.md)")


def compute_balance(
    park: Park,
    intervals: Iterable[IntervalEnergy] | Sequence[IntervalTotals],
    certificates: Iterable[Certificate],
    offsets: Iterable[Offset],
    factor_set: FactorSet,
    start: datetime,
    end: datetime,
    every: Every,
    *,
    initial_storage: Mapping[str, StorageDeviceState] | None = None,
    certificates_used_before_kwh: Mapping[str, float] | None = None,
) -> BalanceResult:
    """Balance of `park` over [start, end) in `every` buckets (docs/accounting.md, api.md §4).

    `intervals` are raw `IntervalEnergy` rows or precomputed `interval_totals(...)`. Intervals
    before `start` are not reported but are run through (storage state, certificate use):
    pass them from the earliest `valid_from` of any certificate that may cover the window, and
    from a point where the storage state is known (`initial_storage`, default empty). Intervals
    at or after `end` are ignored. An interval belongs to the bucket containing its start.
    """
    edges = bucket_edges(start, end, every, park.tz)
    start_ns, end_ns = to_ns(start), to_ns(end)
    totals = _totals_before(intervals, park, end_ns)

    ef_grid = factor_set.grid_factor(park.grid_region).value
    alloc = allocate_certificates(
        [(t.start_ns, t.end_ns, t.grid_import_kwh) for t in totals],
        certificates,
        park.id,
        certificates_used_before_kwh,
    )
    capacities = {d.id: d.capacity_kwh for d in park.devices if d.role is Role.STORAGE}
    state: dict[str, StorageDeviceState] = dict(initial_storage or {})
    state_at_start: dict[str, StorageDeviceState] | None = None

    bucket_starts = [to_ns(lo) for lo, _ in edges]
    interval_ns = park.interval_minutes * 60 * 1_000_000_000
    bucket_sums = _empty_buckets(edges, park, interval_ns)
    warnings: set[str] = set()
    meter = CostMeter(park.tariff, park.tz, interval_ns) if park.tariff is not None else None
    for t in totals:
        if t.start_ns >= start_ns and state_at_start is None:
            state_at_start = dict(state)
        ib = step_interval(t, state, capacities, alloc.applied_kwh.get(t.start_ns, 0.0))
        if t.start_ns < start_ns:
            continue
        warnings.update(_UNOBSERVED.format(dev=dev) for dev in ib.unobserved_storage)
        k = bisect_right(bucket_starts, t.start_ns) - 1
        _add_interval(bucket_sums[k], t, ib, factor_set, ef_grid, warnings)
        if meter is not None:
            meter.add(bucket_sums[k].cost_sums, _flows(t, ib))
    if meter is not None:
        _close_cost(meter, edges, bucket_sums, park, warnings)
    if state_at_start is None:
        state_at_start = dict(state)

    _add_offsets(bucket_sums, bucket_starts, offsets, park, start_ns, end_ns)
    total = Sums()
    for s in bucket_sums:
        total.add(s)
    return BalanceResult(
        park=park.id,
        factor_set=factor_set.name,
        start=start.astimezone(park.tz),
        end=end.astimezone(park.tz),
        every=every,
        buckets=tuple(
            BucketBalance(lo, hi, BalanceFields.from_sums(s))
            for (lo, hi), s in zip(edges, bucket_sums, strict=True)
        ),
        total=BalanceFields.from_sums(total),
        certificate_trail=tuple(u for u in alloc.trail if start_ns <= u.start_ns < end_ns),
        certificate_trail_all=alloc.trail,
        certificates_used_kwh=dict(alloc.used_kwh),
        storage_state=state,
        storage_state_at_start=state_at_start,
        warnings=tuple(sorted(warnings)),
    )
