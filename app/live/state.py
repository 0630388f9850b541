# Long module: LiveState and the per-park scans it runs on every message share one hot path.
"""In-memory live state: latest reading per device, today's cached balance, the /live document."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.accounting import BalanceResult, FactorSet, get_factor_set, live_balance
from app.accounting.cost import live_price
from app.accounting.live import ThermalLive, emission_rate
from app.live.freshness import (
    CADENCE_GAPS,
    MIN_STALE_NS,
    STALE_CADENCES,
    QuantitySeen,
    fresh_until_ns,
)
from app.registry.models import COUNTER_QUANTITIES, SUBMETER_ROLES, Park, Registry, Role
from app.telemetry.models import Reading
from app.timeutil import ns_to_rfc3339

_NS_PER_S = 1_000_000_000
_new_seen = tuple.__new__
_NS_PER_H = 3600 * _NS_PER_S

#: (counter added, counter subtracted) whose rate is the device's power, signed as in
#: docs/gateway-contract.md
_MAIN_COUNTER: dict[Role, tuple[str, str | None]] = {
    Role.GRID: ("energy_import_kwh", "energy_export_kwh"),
    Role.PV: ("energy_kwh", None),
    Role.WIND: ("energy_kwh", None),
    Role.GREEN_DIRECT: ("energy_import_kwh", None),
    Role.STORAGE: ("energy_discharge_kwh", "energy_charge_kwh"),
    Role.LOAD: ("energy_import_kwh", None),
    Role.EV_CHARGER: ("energy_import_kwh", None),
    Role.ELECTROLYZER: ("energy_import_kwh", None),
    Role.HEAT_PUMP: ("energy_import_kwh", None),
}


@dataclass(slots=True)
class DeviceLive:
    """Latest known state of one device."""

    ts_ns: int
    received_ns: int
    power_kw: float | None
    power_source: str  # "reported" (power_kw), "counter" (Δcounter/Δt) or "none"
    soc_pct: float | None
    counter: float | None  # main counter (net, see _MAIN_COUNTER) for the derived power
    values: dict[str, float] = field(default_factory=dict)
    #: quantity → when it was last reported and its learned cadence (docs/live-page.md)
    seen: dict[str, QuantitySeen] = field(default_factory=dict)
    #: counter → (timestamp, value) of its latest report, for the rates
    counts: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: counter → rate per hour between its last two reports (kWh/h = kW, m³/h, GJ/h, kg/h)
    rates: dict[str, float] = field(default_factory=dict)
    #: fresh while the clock is ≤ this (its freshest quantity is within its cadence limit)
    fresh_until_ns: int = 0
    #: every quantity is fresh while the clock is ≤ this
    all_fresh_until_ns: int = 0


@dataclass(slots=True)
class _ParkLive:
    devices: dict[str, DeviceLive] = field(default_factory=dict)
    today: BalanceResult | None = None
    today_computed_ns: int = 0
    version: int = 0
    #: detail flag → ((version, wall second), document, JSON bytes)
    cache: dict[bool, tuple[tuple[int, int], dict[str, Any], bytes, float]] = field(
        default_factory=dict
    )


#: roles whose live power enters the balance as a clipped (≥ 0) sum
_SUPPLY_ROLES = (Role.PV, Role.WIND, Role.GREEN_DIRECT)


def _virtual_park(park: Park) -> Park:
    """The park reduced to one device per supply role (+ grid import/export) and its storage.

    `live_balance` walks every device; at thousands of meters that is most of a render. It
    only needs, per role, the sum of clipped powers (grid: imports and exports apart) and each
    storage device on its own (provenance), so summing first gives the same answer.
    """
    devices: list[dict[str, Any]] = [
        {"id": "_v.grid-import", "role": "grid"},
        {"id": "_v.grid-export", "role": "grid"},
        *({"id": f"_v.{r.value}", "role": r.value} for r in _SUPPLY_ROLES),
    ]
    devices += [d.model_dump() for d in park.devices if d.role is Role.STORAGE]
    return Park.model_validate(
        {
            "id": park.id,
            "timezone": park.timezone,
            "grid_region": park.grid_region,
            "factor_set": park.factor_set,
            "devices": devices,
        }
    )


_GRID, _SUPPLY, _STORAGE, _SUB, _OTHER, _THERMAL, _SUB_THERMAL = range(7)
#: roles whose flow comes from counter rates (heat, fuel, hydrogen), not from power_kw
_THERMAL_ROLES = frozenset(
    {Role.HEAT_FUEL, Role.HEAT_PURCHASED, Role.HEAT_RECOVERED, Role.HYDROGEN}
)
#: sub-meters drawn on the thermal side of the flows (their kW is inside the loads)
_SUB_THERMAL_ROLES = frozenset({Role.HEAT_PUMP, Role.ELECTROLYZER})
#: devices whose flows carry emissions: missing one makes the emission rate incomplete
_EMITTING_ROLES = frozenset({Role.GRID, Role.HEAT_FUEL, Role.HEAT_PURCHASED, Role.HYDROGEN})
#: devices scanned between two yields to the event loop in `document_json_async`
_SLICE = 500


@dataclass(slots=True)
class _Scan:
    """What one pass over a park's devices collects for the /live document."""

    by_role: dict[str, float] = field(default_factory=dict)
    power: dict[str, float] = field(default_factory=dict)  # virtual-park device → kW
    missing: list[str] = field(default_factory=list)
    freshness: dict[str, float | None] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    oldest_ts: int | None = None
    stale_quantities: dict[str, list[str]] = field(default_factory=dict)
    thermal: ThermalLive = field(default_factory=ThermalLive)


def _kind(role: Role) -> int:
    if role in _THERMAL_ROLES:
        return _THERMAL
    if role in _SUB_THERMAL_ROLES:
        return _SUB_THERMAL
    if role is Role.GRID:
        return _GRID
    if role in _SUPPLY_ROLES:
        return _SUPPLY
    if role is Role.STORAGE:
        return _STORAGE
    return _SUB if role in SUBMETER_ROLES else _OTHER


def _main_counter(role: Role, values: Mapping[str, float]) -> float | None:
    spec = _MAIN_COUNTER.get(role)
    if spec is None:
        return None
    plus, minus = spec
    if plus not in values and (minus is None or minus not in values):
        return None
    return values.get(plus, 0.0) - (values.get(minus, 0.0) if minus else 0.0)


def _device_detail(
    dev_id: str,
    rv: str,
    d: DeviceLive,
    park: Park,
    now: int,
    age_s: float | None,
    is_stale: bool,
    default_ns: int,
) -> dict[str, Any]:
    """One device of the `detail` view: age, staleness, power and every quantity seen."""
    return {
        "id": dev_id,
        "role": rv,
        "ts": ns_to_rfc3339(d.ts_ns, park.tz),
        "age_s": age_s,
        "stale": is_stale,
        "power_kw": d.power_kw,
        "power_source": d.power_source,
        "soc_pct": d.soc_pct,
        "quantities": {
            q: {
                "age_s": ((now - s.ts_ns) // 100_000_000) / 10,
                "cadence_s": None if s.cadence_ns is None else round(s.cadence_ns / _NS_PER_S, 1),
                "stale": now > fresh_until_ns(s, default_ns),
            }
            for q, s in sorted(d.seen.items())
        },
        "rates_per_h": {q: round(x, 6) for q, x in sorted(d.rates.items())},
    }


class LiveState:
    """Latest values per device and today's balance, per park; renders the /live document.

    `apply(readings)` is cheap and thread-safe (a lock around dict updates); the collector (or
    the composition root's lightweight MQTT subscriber) calls it for every accepted batch.
    Documents are rendered from memory only and cached per (change version, wall second).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        factor_sets: Mapping[str, FactorSet] | None = None,
        stale_after_s: float = 900.0,
        clock: Callable[[], int] = time.time_ns,
        min_render_interval_s: float = 1.0,
    ) -> None:
        self.registry = registry
        self.min_render_interval_s = min_render_interval_s
        self._wanted: dict[tuple[str, bool], float] = {}
        self._renderer_running = False
        self._plan(registry)
        self.stale_after_ns = int(stale_after_s * _NS_PER_S)
        self.clock = clock
        self._factor_sets = factor_sets
        self._lock = threading.Lock()
        self._parks: dict[str, _ParkLive] = {p.id: _ParkLive() for p in registry.parks}

    def _plan(self, registry: Registry) -> None:
        self._virtual = {p.id: _virtual_park(p) for p in registry.parks}
        self._plans = {
            p.id: [(d.id, d.role.value, _kind(d.role)) for d in p.devices] for p in registry.parks
        }
        self._thermal_meta = {
            p.id: {
                d.id: (
                    d.role,
                    d.fuel.value if d.fuel else None,
                    d.h2_class.value if d.h2_class else None,
                )
                for d in p.devices
                if d.role in _THERMAL_ROLES or d.role in _SUB_THERMAL_ROLES
            }
            for p in registry.parks
        }
        self._emitting = {
            p.id: frozenset(d.id for d in p.devices if d.role in _EMITTING_ROLES)
            for p in registry.parks
        }

    def set_registry(self, registry: Registry, stale: Iterable[tuple[str, str]] = ()) -> None:
        """Switch to an edited registry. Latest values of devices still present are kept,
        except those in `stale` (removed or edited devices: their counters may mean
        something else now); new parks start empty and removed parks are dropped."""
        with self._lock:
            self.registry = registry
            self._plan(registry)
            parks = {p.id: self._parks.get(p.id) or _ParkLive() for p in registry.parks}
            for park_id, device_id in stale:
                pl = parks.get(park_id)
                if pl is not None:
                    pl.devices.pop(device_id, None)
            for pl in parks.values():
                pl.version += 1  # re-render: the device list or roles may differ
                pl.cache.clear()
            self._parks = parks
            for key in [k for k in self._wanted if k[0] not in parks]:
                del self._wanted[key]

    # --- updates ----------------------------------------------------------------------

    def apply(self, readings: Iterable[Reading]) -> int:
        """Take accepted readings (any order, any parks); returns how many changed the state.

        A reading older than the device's latest is ignored (late gateway flushes must not
        move the live view back in time). Unknown parks/devices are ignored.
        """
        now = self.clock()
        changed = 0
        with self._lock:
            touched: set[str] = set()
            for r in readings:
                pl = self._parks.get(r.park)
                if pl is None:
                    continue
                dev = self.registry.device(r.park, r.device)
                if dev is None:
                    continue
                prev = pl.devices.get(r.device)
                if prev is not None and r.ts_ns < prev.ts_ns:
                    continue
                counter = _main_counter(dev.role, r.values)
                power: float | None = r.values.get("power_kw")
                source = "reported"
                if power is None:
                    power, source = None, "none"
                    if (
                        prev is not None
                        and counter is not None
                        and prev.counter is not None
                        and r.ts_ns > prev.ts_ns
                        and not r.reset
                    ):
                        delta = counter - prev.counter
                        # A counter going back is a reset or replacement, not negative power.
                        if delta >= 0 or _MAIN_COUNTER[dev.role][1] is not None:
                            power = delta / ((r.ts_ns - prev.ts_ns) / _NS_PER_H)
                            source = "counter"
                    elif prev is not None and prev.ts_ns == r.ts_ns:
                        power, source = prev.power_kw, prev.power_source
                soc = r.values.get("soc_pct", prev.soc_pct if prev is not None else None)
                seen, counts, rates, until_hi, until_lo = self._track(prev, r)
                pl.devices[r.device] = DeviceLive(
                    r.ts_ns,
                    now,
                    power,
                    source,
                    soc,
                    counter,
                    dict(r.values),
                    seen,
                    counts,
                    rates,
                    until_hi,
                    until_lo,
                )
                touched.add(r.park)
                changed += 1
            for park_id in touched:
                self._parks[park_id].version += 1
        return changed

    def _track(
        self, prev: DeviceLive | None, r: Reading
    ) -> tuple[dict[str, QuantitySeen], dict[str, tuple[int, float]], dict[str, float], int, int]:
        """Per-quantity freshness and counter rates after `r`: (seen, counts, rates, fresh
        until, all fresh until). New dicts: a render may be reading the previous ones outside
        the lock. Inlined `QuantitySeen.seen_at` and `fresh_until_ns`: this runs for every
        reading."""
        ts = r.ts_ns
        if prev is None:
            seen: dict[str, QuantitySeen] = {}
            counts: dict[str, tuple[int, float]] = {}
            rates: dict[str, float] = {}
        else:
            seen, counts, rates = prev.seen.copy(), prev.counts, prev.rates
        copied = prev is None
        for q, v in r.values.items():
            s = seen.get(q)
            # tuple.__new__: the NamedTuple without its Python-level constructor
            if s is None:
                seen[q] = _new_seen(QuantitySeen, (ts, (), None))
            elif ts > s[0]:
                gaps = (*s[1][1 - CADENCE_GAPS :], ts - s[0])
                seen[q] = _new_seen(QuantitySeen, (ts, gaps, sorted(gaps)[(len(gaps) - 1) // 2]))
            if q not in COUNTER_QUANTITIES:
                continue
            last = counts.get(q)
            if last is not None and ts <= last[0]:
                continue
            if not copied:
                counts, rates, copied = counts.copy(), rates.copy(), True
            if last is not None:
                delta = v - last[1]
                if r.reset or delta < 0:  # a reset or a replaced meter: no rate until next
                    rates.pop(q, None)
                else:
                    rates[q] = delta / ((ts - last[0]) / _NS_PER_H)
            counts[q] = (ts, v)
        default = self.stale_after_ns
        hi = lo = ts + default
        first = True
        for s in seen.values():
            c = s[2]
            until = s[0] + (default if c is None else max(MIN_STALE_NS, STALE_CADENCES * c))
            if first:
                hi = lo = until
                first = False
            elif until > hi:
                hi = until
            elif until < lo:
                lo = until
        return seen, counts, rates, hi, lo

    def set_today(self, park: str, result: BalanceResult, computed_ns: int | None = None) -> None:
        """Install today's balance so far (from the background refresh)."""
        with self._lock:
            pl = self._parks.get(park)
            if pl is None:
                return
            pl.today = result
            pl.today_computed_ns = computed_ns if computed_ns is not None else self.clock()
            pl.version += 1

    def version(self, park: str) -> int:
        pl = self._parks.get(park)
        return pl.version if pl is not None else -1

    def rendered_version(self, park: str, *, detail: bool = False) -> int:
        """The change version the cached document of `park` was rendered from (-1: none)."""
        pl = self._parks.get(park)
        hit = pl.cache.get(detail) if pl is not None else None
        return hit[0][0] if hit is not None else -1

    def device(self, park: str, device: str) -> DeviceLive | None:
        pl = self._parks.get(park)
        return pl.devices.get(device) if pl is not None else None

    # --- rendering --------------------------------------------------------------------

    def document(self, park_id: str, *, detail: bool = False) -> dict[str, Any]:
        """The /live document of `park_id` (KeyError if unknown).

        `freshness` maps every device to the age (s) of its latest reading (None = never
        seen); `detail=True` adds `devices`, one entry per device with its latest values.
        """
        return self._render(park_id, detail)[0]

    def document_json(self, park_id: str, *, detail: bool = False) -> bytes:
        """The /live document as JSON bytes (cached per change version and wall second)."""
        return self._render(park_id, detail)[1]

    async def document_json_async(self, park_id: str, *, detail: bool = False) -> bytes:
        """Like `document_json`, for the event loop. While `render_loop` runs, a cached
        document up to 3 render intervals old is served as is (the loop keeps it current), so
        requests never wait for a render; otherwise a render happens here, built in slices of
        `_SLICE` devices with yields between them (5,000 devices ≈ 8 ms of Python)."""
        pl = self._parks.get(park_id)
        if pl is None or self.registry.park(park_id) is None:
            raise KeyError(park_id)
        mono = time.monotonic()
        self._wanted[(park_id, detail)] = mono
        hit = pl.cache.get(detail)
        if (
            hit is not None
            and self._renderer_running
            and mono - hit[3] < 3 * self.min_render_interval_s
        ):
            return hit[2]
        now = self.clock()
        fresh = self._fresh_hit(pl, detail, now)
        if fresh is not None:
            return fresh[1]
        return await self._render_async(park_id, detail)

    async def _render_async(self, park_id: str, detail: bool) -> bytes:
        park = self.registry.park(park_id)
        pl = self._parks.get(park_id)
        if park is None or pl is None:
            raise KeyError(park_id)
        now = self.clock()
        with self._lock:
            devices = dict(pl.devices)
            today, today_ns = pl.today, pl.today_computed_ns
            version = pl.version
        plan = self._plans[park_id]
        acc = _Scan()
        for i in range(0, len(plan), _SLICE):
            if i:
                await asyncio.sleep(0)
            self._scan(acc, park, devices, plan[i : i + _SLICE], now, detail)
        doc = self._finish(park, acc, today, today_ns, now, detail)
        return self._store(pl, detail, version, now, doc)[1]

    async def render_loop(self, idle_after_s: float = 30.0) -> None:
        """Keep the documents clients asked for in the last `idle_after_s` current, one
        render per `min_render_interval_s` at most (run it as a task; the app's lifespan
        does). Requests then only ever read cached bytes."""
        interval = max(0.05, self.min_render_interval_s)
        self._renderer_running = True
        try:
            while True:
                await asyncio.sleep(interval)
                mono = time.monotonic()
                for (park_id, detail), asked in list(self._wanted.items()):
                    if mono - asked > idle_after_s:
                        del self._wanted[(park_id, detail)]
                        continue
                    pl = self._parks.get(park_id)
                    if pl is None:  # removed from the registry meanwhile
                        self._wanted.pop((park_id, detail), None)
                        continue
                    hit = pl.cache.get(detail)
                    if hit is None or hit[0] != (pl.version, self.clock() // _NS_PER_S):
                        await self._render_async(park_id, detail)
        finally:
            self._renderer_running = False

    def _fresh_hit(
        self, pl: _ParkLive, detail: bool, now: int
    ) -> tuple[dict[str, Any], bytes] | None:
        hit = pl.cache.get(detail)
        if hit is not None and (
            hit[0] == (pl.version, now // _NS_PER_S)
            # Readings arrive many times a second on a big park: render at most once per
            # `min_render_interval_s` (a 5,000-device render costs milliseconds).
            or time.monotonic() - hit[3] < self.min_render_interval_s
        ):
            return hit[1], hit[2]
        return None

    def _store(
        self, pl: _ParkLive, detail: bool, version: int, now: int, doc: dict[str, Any]
    ) -> tuple[dict[str, Any], bytes]:
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        pl.cache[detail] = ((version, now // _NS_PER_S), doc, body, time.monotonic())
        return doc, body

    def _render(self, park_id: str, detail: bool) -> tuple[dict[str, Any], bytes]:
        park = self.registry.park(park_id)
        if park is None:
            raise KeyError(park_id)
        pl = self._parks[park_id]
        now = self.clock()
        hit = self._fresh_hit(pl, detail, now)
        if hit is not None:
            return hit
        with self._lock:
            devices = dict(pl.devices)
            today, today_ns = pl.today, pl.today_computed_ns
            version = pl.version
        acc = _Scan()
        self._scan(acc, park, devices, self._plans[park_id], now, detail)
        doc = self._finish(park, acc, today, today_ns, now, detail)
        return self._store(pl, detail, version, now, doc)

    def _scan(
        self,
        acc: _Scan,
        park: Park,
        devices: Mapping[str, DeviceLive],
        plan: list[tuple[str, str, int]],
        now: int,
        detail: bool,
    ) -> None:
        by_role, power, missing = acc.by_role, acc.power, acc.missing
        freshness, details, stale = acc.freshness, acc.details, acc.stale
        default_ns = self.stale_after_ns
        thermal_meta = self._thermal_meta[park.id]
        oldest_ts = acc.oldest_ts
        # Hot loop (thousands of devices, once a second): plain tuples and int codes only.
        for dev_id, rv, kind in plan:
            d = devices.get(dev_id)
            if d is None:
                freshness[dev_id] = None
                if kind not in (_SUB, _SUB_THERMAL):
                    missing.append(dev_id)
                if detail:
                    details.append({"id": dev_id, "role": rv, "ts": None})
                continue
            ts = d.ts_ns
            freshness[dev_id] = ((now - ts) // 100_000_000) / 10
            if oldest_ts is None or ts < oldest_ts:
                oldest_ts = ts
            p = d.power_kw
            is_stale = now > d.fresh_until_ns
            stale_q: list[str] = []
            if is_stale:
                stale.append(dev_id)
            elif now > d.all_fresh_until_ns:
                stale_q = sorted(
                    q for q, s in d.seen.items() if now > fresh_until_ns(s, default_ns)
                )
                acc.stale_quantities[dev_id] = stale_q
            if kind in (_THERMAL, _SUB_THERMAL):
                # (no meta: the registry changed between two slices of this render)
                meta = None if is_stale else thermal_meta.get(dev_id)
                if meta is not None:
                    rates = {q: x for q, x in d.rates.items() if q not in stale_q}
                    known = acc.thermal.add(
                        meta[0], rates, fuel=meta[1], h2_class=meta[2], power_kw=p
                    )
                    if not known and kind == _THERMAL:
                        missing.append(dev_id)
                elif kind == _THERMAL:
                    missing.append(dev_id)
                if not is_stale and p is not None:  # as published (thermal kW for heat)
                    by_role[rv] = by_role.get(rv, 0.0) + p
            elif is_stale or p is None:
                if kind != _SUB:
                    missing.append(dev_id)
            else:
                by_role[rv] = by_role.get(rv, 0.0) + p
                if kind == _GRID:
                    key = "_v.grid-import" if p >= 0 else "_v.grid-export"
                    power[key] = power.get(key, 0.0) + p
                elif kind == _SUPPLY:
                    key = "_v." + rv
                    power[key] = power.get(key, 0.0) + (p if p > 0 else 0.0)
                elif kind == _STORAGE:
                    power[dev_id] = p
            if detail:
                details.append(
                    _device_detail(
                        dev_id, rv, d, park, now, freshness[dev_id], is_stale, default_ns
                    )
                )
        acc.oldest_ts = oldest_ts

    def _finish(
        self,
        park: Park,
        acc: _Scan,
        today: BalanceResult | None,
        today_ns: int,
        now: int,
        detail: bool,
    ) -> dict[str, Any]:
        fs = get_factor_set(park.factor_set, self._factor_sets)
        oldest_s = None if acc.oldest_ts is None else ((now - acc.oldest_ts) // 100_000_000) / 10
        storage_state = today.storage_state if today is not None else {}
        certified_fraction = 0.0
        if today is not None and today.total.grid_import_kwh > 0:
            certified_fraction = today.total.certificates_applied_kwh / today.total.grid_import_kwh
        lb = live_balance(self._virtual[park.id], acc.power, storage_state, fs, certified_fraction)
        rate = emission_rate(
            lb.grid_import_kw, acc.thermal, fs, park.grid_region, certified_fraction
        )
        emitting = self._emitting[park.id]
        rate_missing = [d for d in acc.missing if d in emitting]
        today_doc: dict[str, Any] | None = None
        if today is not None:
            today_doc = {
                "start": today.start.isoformat(),
                "end": today.end.isoformat(),
                "computed_at": ns_to_rfc3339(today_ns, park.tz),
                **today.total.as_dict(),
            }
        doc: dict[str, Any] = {
            "park": park.id,
            "time": ns_to_rfc3339(now, park.tz),
            "factor_set": fs.name,
            "power_kw": {role: round(kw, 6) for role, kw in sorted(acc.by_role.items())},
            "grid_import_kw": lb.grid_import_kw,
            "grid_export_kw": lb.grid_export_kw,
            "renewable_kw": lb.renewable_kw,
            "green_direct_kw": lb.green_direct_kw,
            "storage_charge_kw": lb.storage_charge_kw,
            "storage_discharge_kw": lb.storage_discharge_kw,
            "load_kw": lb.load_kw,
            "green_share_physical": lb.green_share_physical,
            "green_share_market": lb.green_share_market,
            "carbon_intensity_g_per_kwh": lb.carbon_intensity_location_g_per_kwh,
            "carbon_intensity_location_g_per_kwh": lb.carbon_intensity_location_g_per_kwh,
            "carbon_intensity_market_g_per_kwh": lb.carbon_intensity_market_g_per_kwh,
            # kgCO2/h of the whole park (scope 1 + 2 + purchased heat), not per kWh
            "emission_rate_location_kg_per_h": round(rate.location, 3),
            "emission_rate_market_kg_per_h": round(rate.market, 3),
            "emission_rate_kg_per_h": {
                **rate.as_dict(),
                "complete": not rate_missing,
                "missing_devices": rate_missing,
                "warnings": list(rate.warnings),
            },
            "thermal": acc.thermal.as_dict(fs),
            "today": today_doc,
            # the period and price in force now (docs/cost.md); None without a tariff
            "tariff": None
            if park.tariff is None
            else live_price(park.tariff, now, park.tz, lb.grid_import_kw, lb.grid_export_kw),
            "missing_devices": acc.missing,
            "stale_devices": acc.stale,
            "stale_quantities": acc.stale_quantities,
            "stale_after_s": self.stale_after_ns / _NS_PER_S,
            "oldest_age_s": oldest_s,
            "freshness": acc.freshness,
        }
        if detail:
            doc["devices"] = acc.details
        return doc
