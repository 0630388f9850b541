"""In-memory live state: latest reading per device, today's cached balance, the /live document."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.accounting import BalanceResult, FactorSet, get_factor_set, live_balance
from app.http.times import ns_to_rfc3339
from app.registry.models import Park, Registry, Role
from app.telemetry.models import Reading

_NS_PER_S = 1_000_000_000
_NS_PER_H = 3600 * _NS_PER_S

#: (counter added, counter subtracted) whose rate is the device's power in SPEC §2 sign
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


@dataclass(slots=True)
class _ParkLive:
    devices: dict[str, DeviceLive] = field(default_factory=dict)
    today: BalanceResult | None = None
    today_computed_ns: int = 0
    version: int = 0
    #: detail flag → ((version, wall second), document, JSON bytes)
    cache: dict[bool, tuple[tuple[int, int], dict[str, Any], bytes]] = field(default_factory=dict)


def _main_counter(role: Role, values: Mapping[str, float]) -> float | None:
    spec = _MAIN_COUNTER.get(role)
    if spec is None:
        return None
    plus, minus = spec
    if plus not in values and (minus is None or minus not in values):
        return None
    return values.get(plus, 0.0) - (values.get(minus, 0.0) if minus else 0.0)


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
    ) -> None:
        self.registry = registry
        self.stale_after_ns = int(stale_after_s * _NS_PER_S)
        self.clock = clock
        self._factor_sets = factor_sets
        self._lock = threading.Lock()
        self._parks: dict[str, _ParkLive] = {p.id: _ParkLive() for p in registry.parks}

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
                pl.devices[r.device] = DeviceLive(
                    ts_ns=r.ts_ns,
                    received_ns=now,
                    power_kw=power,
                    power_source=source,
                    soc_pct=soc,
                    counter=counter,
                    values=dict(r.values),
                )
                touched.add(r.park)
                changed += 1
            for park_id in touched:
                self._parks[park_id].version += 1
        return changed

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

    def _render(self, park_id: str, detail: bool) -> tuple[dict[str, Any], bytes]:
        park = self.registry.park(park_id)
        if park is None:
            raise KeyError(park_id)
        pl = self._parks[park_id]
        now = self.clock()
        hit = pl.cache.get(detail)
        if hit is not None and hit[0] == (pl.version, now // _NS_PER_S):
            return hit[1], hit[2]
        with self._lock:
            devices = dict(pl.devices)
            today, today_ns = pl.today, pl.today_computed_ns
            version = pl.version
        doc = self._build(park, devices, today, today_ns, now, detail)
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        pl.cache[detail] = ((version, now // _NS_PER_S), doc, body)
        return doc, body

    def _build(
        self,
        park: Park,
        devices: Mapping[str, DeviceLive],
        today: BalanceResult | None,
        today_ns: int,
        now: int,
        detail: bool,
    ) -> dict[str, Any]:
        fs = get_factor_set(park.factor_set, self._factor_sets)
        power: dict[str, float] = {}
        freshness: dict[str, float | None] = {}
        details: list[dict[str, Any]] = []
        stale: list[str] = []
        oldest_s: float | None = None
        for dev in park.devices:
            d = devices.get(dev.id)
            if d is None:
                freshness[dev.id] = None
                if detail:
                    details.append({"id": dev.id, "role": dev.role.value, "ts": None})
                continue
            age_s = round((now - d.ts_ns) / _NS_PER_S, 1)
            freshness[dev.id] = age_s
            oldest_s = age_s if oldest_s is None else max(oldest_s, age_s)
            is_stale = now - d.ts_ns > self.stale_after_ns
            if is_stale:
                stale.append(dev.id)
            elif d.power_kw is not None:
                power[dev.id] = d.power_kw
            if detail:
                details.append(
                    {
                        "id": dev.id,
                        "role": dev.role.value,
                        "ts": ns_to_rfc3339(d.ts_ns, park.tz),
                        "age_s": age_s,
                        "stale": is_stale,
                        "power_kw": d.power_kw,
                        "power_source": d.power_source,
                        "soc_pct": d.soc_pct,
                    }
                )
        storage_state = today.storage_state if today is not None else {}
        certified_fraction = 0.0
        if today is not None and today.total.grid_import_kwh > 0:
            certified_fraction = today.total.certificates_applied_kwh / today.total.grid_import_kwh
        lb = live_balance(park, power, storage_state, fs, certified_fraction)
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
            "power_kw": {role: round(kw, 6) for role, kw in sorted(lb.power_by_role_kw.items())},
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
            "today": today_doc,
            "missing_devices": list(lb.missing_devices),
            "stale_devices": stale,
            "stale_after_s": self.stale_after_ns / _NS_PER_S,
            "oldest_age_s": oldest_s,
            "freshness": freshness,
        }
        if detail:
            doc["devices"] = details
        return doc
