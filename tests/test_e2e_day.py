"""Acceptance: a scripted day through real Mosquitto and influxd; /balance and /live by hand.

The park (Asia/Shanghai, `northeast`, factor set `cn-2023`) has a grid meter that imports and
exports, PV, wind, a battery, a gas boiler, purchased district heat and a sub-metered
building. Every device publishes a reading at every quarter hour of 2026-11-20 (local), from
00:00 to 24:00, so each 15-min interval's energy is exactly the counter delta. Powers are
constant within six blocks (kW; the per-interval energy is a quarter of it):

| block       | n  | import | export | PV   | wind | battery      | loads = I+G−X+S−C |
| ----------- | -- | ------ | ------ | ---- | ---- | ------------ | ----------------- |
| A 00–06     | 24 | 400    | 0      | 0    | 200  | idle         | 600               |
| B 06–10     | 16 | 200    | 0      | 600  | 200  | idle         | 1000              |
| C 10–14     | 16 | 0      | 500    | 1600 | 200  | charge 300   | 1000              |
| D 14–18     | 16 | 200    | 0      | 600  | 200  | idle         | 1000              |
| E 18–22     | 16 | 500    | 0      | 0    | 200  | discharge 300| 1000 (lossy: 970) |
| F 22–24     | 8  | 400    | 0      | 0    | 200  | idle         | 600               |

The battery charges only in block C, when the park imports nothing: per interval
G = 450, X = 125, G_self = 325, N = I + D + G_self = 325, f_N = 1, so the 75 kWh charged each
interval are 100 % green (physical and market). It holds 1200 kWh of PV at 14:00 and gives all
of it back in block E (75 kWh per interval at fraction 1), empty again at 22:00: storage holds
the same (nothing) at both ends of the day, so the boundary identity Σ(I + D + G − X) and
Σ(G_self + D) are the day's consumption and physical green (docs/accounting.md §2).

Gas boiler: 120 m³/h in block A (30 m³ per interval), 40 m³/h after (10 m³ per interval).
District heat: 2 GJ/h all day (0.5 GJ per interval). Building sub-meter: 300 kW all day.
A 0.5 MWh GEC valid for the day is posted through the API; it covers imports in time order:
block A imports 100 kWh per interval, so 00:00–01:15 (five intervals) take all 500 kWh.

Day totals, by hand (factors cn-2023: grid NE 0.5122, residual 0.6096 kg/kWh, gas 2.162 kg/m³
and 1.2143 kgce/m³, heat 110 kg/GJ and 34.1 kgce/GJ, electricity 0.1229 kgce/kWh):

    I   = 24·100 + 16·50 + 0 + 16·50 + 16·125 + 8·100       = 6800 kWh
    X   = 16·125                                             = 2000 kWh
    PV  = 16·150 + 16·400 + 16·150                           = 11200 kWh
    W   = 96·50                                              = 4800 kWh
    G   = PV + W                                             = 16000 kWh
    E   = I + G − X  (= Σ loads: 3600+4000·4+1200)           = 20800 kWh
    green physical = Σ(G − X) (X ≤ G in every interval)      = 14000 kWh
        (by block, loads' green: A 1200, B 3200, C 4000, D 3200, E 800 wind + 1200 stored, F 400)
    green market   = 14000 + 500 certificate                 = 14500 kWh
    gas = 24·30 + 72·10 = 1440 m³;  heat = 96·0.5 = 48 GJ
    scope1          = 1440 · 2.162                           = 3113.28 kg
    scope2 location = 6800 · 0.5122                          = 3482.96 kg
    scope2 market   = (6800 − 500) · 0.6096                  = 3840.48 kg
    heat purchased  = 48 · 110                               = 5280 kg
    net             = 3113.28 + 3840.48 + 5280               = 12233.76 kg
    energy_tce      = (20800·0.1229 + 1440·1.2143 + 48·34.1) / 1000
                    = (2556.32 + 1748.592 + 1636.8) / 1000   = 5.941712 tce
    tco2_per_tce    = 12.23376 / 5.941712
    avoided         = min(G, X) · 0.5122 = 2000 · 0.5122     = 1024.4 kg
    completeness    = 6 expected devices × 96 intervals, all measured = 1.0

The battery publishes its SoC (2000 kWh capacity): 0 % at midnight, +3.75 % (75 kWh) per
quarter in block C, 60 % from 14:00, −3.75 % per quarter in block E, 0 % from 22:00. In the
lossless run it discharges 300 kW (75 kWh per quarter, the SoC's drop). The lossy run
discharges 270 kW (67.5 kWh) for the same SoC drop: 7.5 kWh lost per quarter, 120 kWh over the
day, all stored PV. Losses are consumption and green (docs/accounting.md §2), so the
day's figures are the same as lossless except storage_discharge_kwh (1080) and
storage_losses_kwh (120); the loads drawing 30 kW less in block E is made up by the losses.

Cost (docs/cost.md), tariff valley 00–06 and 22–24 at 0.30, flat 06–18 at 0.60, peak 18–22
at 0.90 CNY/kWh, export 0.35, gas 3.5 CNY/m³, heat 40 CNY/GJ, certificates 50 CNY/MWh,
demand 30 CNY/kW·month:

    import valley (A 2400 + F 800) 3200 kWh × 0.30 = 960; flat (B 800 + D 800) 1600 × 0.60
    = 960; peak (E) 2000 × 0.90 = 1800; import 3720
    export credit 2000 × 0.35 = 700; gas 1440 × 3.5 = 5040; heat 48 × 40 = 1920;
    certificates 0.5 MWh × 50 = 25
    energy_cny = 3720 − 700 + 5040 + 1920 + 25 = 10005 = cost_cny (one day is not a whole
    month: the demand charge is shown, not counted: peak 125 kWh per quarter = 500 kW in
    block E from 18:00, 500 × 30 = 15000 so far)
    saved by renewables (G − min(G, X)) × p + min(G, X) × 0.35: A 1200 × 0.3 = 360,
    B 3200 × 0.6 = 1920, C 5200 × 0.6 + 2000 × 0.35 = 3820, D 1920, E 800 × 0.9 = 720,
    F 400 × 0.3 = 120 → 8860
    saved by storage (S − C) × p: −1200 × 0.6 + 1200 × 0.9 = 360 (lossy: 1080 × 0.9 − 720
    = 252); total 9220 (lossy 9112) = loads bought at their hour's price (A 3600 × 0.3 +
    B..D 12000 × 0.6 + E 4000 × 0.9 + F 1200 × 0.3 = 12240; lossy E 3880: 12132) − paid for
    electricity (3720 − 700)

The day is published in two parts so `/live` can be checked twice: after the 21:00 readings
(battery discharging stored PV) and after the 24:00 readings (battery idle, next day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.accounting.buckets import to_ns
from app.config import Settings
from app.http.services import Services
from app.ledgers import ApiRole, LedgerStore
from app.live.state import LiveState
from app.main import create_app, refresh_today
from app.registry import load_registry
from app.storage.influx import InfluxStorage
from collectors.service import start_collector
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer
from tests.ingest_support import SHANGHAI, publish_all, wait_for

PARK = "e2e"
DAY = datetime(2026, 11, 20, tzinfo=SHANGHAI)
QUARTER = timedelta(minutes=15)
N_INTERVALS = 96


def approx(expected: float) -> Any:
    """The tolerance of every comparison here: float rounding only."""
    return pytest.approx(expected, rel=1e-9, abs=1e-6)


PARKS_YAML = f"""
parks:
  - id: {PARK}
    name: 端到端测试园区
    timezone: Asia/Shanghai
    grid_region: northeast
    factor_set: cn-2023
    devices:
      - {{id: grid-main, role: grid, max_kw: 5000}}
      - {{id: pv-1, role: pv, max_kw: 2000}}
      - {{id: wind-1, role: wind, max_kw: 1000}}
      - {{id: bess-1, role: storage, capacity_kwh: 2000, max_kw: 1000}}
      - {{id: boiler-1, role: heat_fuel, fuel: natural_gas}}
      - {{id: dh-1, role: heat_purchased}}
      - {{id: bldg-a, role: load, included_in: grid-main}}
    tariff:
      name: e2e-tou
      revisions:
        - valid_from: 2026-01-01
          source: e2e test tariff
          schedules:
            - bands:
                - {{start: "00:00", end: "06:00", period: valley}}
                - {{start: "06:00", end: "18:00", period: flat}}
                - {{start: "18:00", end: "22:00", period: peak}}
                - {{start: "22:00", end: "24:00", period: valley}}
          import_cny_per_kwh: {{peak: 0.90, flat: 0.60, valley: 0.30}}
          export_cny_per_kwh: 0.35
          demand_cny_per_kw_month: 30.0
          gas_cny_per_m3: 3.5
          heat_cny_per_gj: 40.0
          certificate_cny_per_mwh: 50.0
"""


@dataclass(frozen=True)
class Block:
    """Constant powers (kW; gas m³/h) over `n` quarter hours."""

    n: int
    import_kw: float
    export_kw: float
    pv_kw: float
    wind_kw: float
    battery_kw: float  # + discharge, − charge (docs/gateway-contract.md sign)
    gas_m3h: float
    soc_step_pct: float = 0.0  # the battery's SoC change per quarter hour (2000 kWh capacity)


def blocks(discharge_kw: float) -> list[Block]:
    """The day; `discharge_kw` is the battery's power in block E (300 lossless, 270 lossy)."""
    return [
        Block(24, 400, 0, 0, 200, 0, 120),  # A 00–06
        Block(16, 200, 0, 600, 200, 0, 40),  # B 06–10
        # C 10–14: PV surplus charges the battery, 75 kWh per quarter = 3.75 % of 2000 kWh
        Block(16, 0, 500, 1600, 200, -300, 40, 3.75),
        Block(16, 200, 0, 600, 200, 0, 40),  # D 14–18
        # E 18–22: stored PV discharged; the SoC falls 75 kWh per quarter whatever comes out
        Block(16, 500, 0, 0, 200, discharge_kw, 40, -3.75),
        Block(8, 400, 0, 0, 200, 0, 40),  # F 22–24
    ]


LOSSLESS_KW = 300.0
LOSSY_KW = 270.0  # 67.5 kWh out per quarter for 75 kWh of content: 7.5 kWh lost each
HEAT_GJ_PER_H = 2.0
HEAT_KW = 555.6  # the district heat meter's thermal power (2 GJ/h), shown in /live only
BLDG_KW = 300.0
#: the boiler's thermal output as it reports it (≈ 10 kWh per m³), shown in /live only
BOILER_KW_PER_M3H = 10.0


def block_of(k: int, discharge_kw: float) -> Block:
    """The block of interval k (0..95); the 24:00 reading (k = 96) reports the last block."""
    k = min(k, N_INTERVALS - 1)
    for b in blocks(discharge_kw):
        if k < b.n:
            return b
        k -= b.n
    raise AssertionError("unreachable")


def readings_of(device: str, discharge_kw: float = LOSSLESS_KW) -> list[dict[str, Any]]:
    """The 97 readings (00:00 … 24:00) of one device; power_kw is that of the next interval,
    the battery's soc_pct that at the reading's instant (the end of the previous interval)."""
    base = {"grid-main": 10_000.0, "pv-1": 50_000.0, "wind-1": 70_000.0, "bess-1": 0.0}
    counters: dict[str, float] = {}
    out: list[dict[str, Any]] = []
    for k in range(N_INTERVALS + 1):
        b = block_of(k, discharge_kw)
        ts = (DAY + k * QUARTER).isoformat()
        if device == "grid-main":
            counters.setdefault("energy_import_kwh", base[device])
            counters.setdefault("energy_export_kwh", 3_000.0)
            power = b.import_kw - b.export_kw
        elif device in ("pv-1", "wind-1"):
            counters.setdefault("energy_kwh", base[device])
            power = b.pv_kw if device == "pv-1" else b.wind_kw
        elif device == "bess-1":
            counters.setdefault("energy_charge_kwh", 8_000.0)
            counters.setdefault("energy_discharge_kwh", 7_000.0)
            counters.setdefault("soc_pct", 0.0)  # empty at midnight, as the chain assumes
            power = b.battery_kw
        elif device == "boiler-1":
            counters.setdefault("gas_m3", 123_456.0)
            power = b.gas_m3h * BOILER_KW_PER_M3H
        elif device == "dh-1":
            counters.setdefault("heat_gj", 900.0)
            power = HEAT_KW
        else:
            counters.setdefault("energy_import_kwh", 20_000.0)
            power = BLDG_KW
        out.append({"ts": ts, **counters, "power_kw": power})
        if k == N_INTERVALS:
            break
        # advance the counters by this interval's energy (kW / 4 = kWh per quarter hour)
        if device == "grid-main":
            counters["energy_import_kwh"] += b.import_kw / 4
            counters["energy_export_kwh"] += b.export_kw / 4
        elif device == "pv-1":
            counters["energy_kwh"] += b.pv_kw / 4
        elif device == "wind-1":
            counters["energy_kwh"] += b.wind_kw / 4
        elif device == "bess-1":
            counters["energy_charge_kwh"] += max(0.0, -b.battery_kw) / 4
            counters["energy_discharge_kwh"] += max(0.0, b.battery_kw) / 4
            counters["soc_pct"] += b.soc_step_pct
        elif device == "boiler-1":
            counters["gas_m3"] += b.gas_m3h / 4
        elif device == "dh-1":
            counters["heat_gj"] += HEAT_GJ_PER_H / 4
        else:
            counters["energy_import_kwh"] += BLDG_KW / 4
    return out


DEVICES = ["grid-main", "pv-1", "wind-1", "bess-1", "boiler-1", "dh-1", "bldg-a"]


def messages(first_k: int, last_k: int, discharge_kw: float) -> list[tuple[str, object]]:
    """Readings k in [first_k, last_k] of every device, as gateway arrays of up to 8."""
    out: list[tuple[str, object]] = []
    per_device = {d: readings_of(d, discharge_kw)[first_k : last_k + 1] for d in DEVICES}
    for j in range(0, last_k - first_k + 1, 8):
        for d in DEVICES:
            chunk = per_device[d][j : j + 8]
            if chunk:
                out.append((f"lingtan/v1/{PARK}/{d}/telemetry", chunk))
    return out


def test_scripted_counters_are_what_the_table_says() -> None:
    # guards the script itself: the grid meter's day deltas are the hand totals above
    grid = readings_of("grid-main")
    assert len(grid) == 97
    assert grid[-1]["energy_import_kwh"] - grid[0]["energy_import_kwh"] == 6800.0
    assert grid[-1]["energy_export_kwh"] - grid[0]["energy_export_kwh"] == 2000.0
    bess = readings_of("bess-1")
    assert bess[-1]["energy_charge_kwh"] - bess[0]["energy_charge_kwh"] == 1200.0
    assert bess[-1]["energy_discharge_kwh"] - bess[0]["energy_discharge_kwh"] == 1200.0
    gas = readings_of("boiler-1")
    assert gas[-1]["gas_m3"] - gas[0]["gas_m3"] == 1440.0
    assert readings_of("dh-1")[-1]["heat_gj"] - 900.0 == 48.0
    socs = [r["soc_pct"] for r in bess]
    assert (socs[0], socs[40], socs[56], socs[72], socs[88], socs[96]) == (0, 0, 60, 60, 0, 0)
    lossy = readings_of("bess-1", LOSSY_KW)
    assert lossy[-1]["energy_discharge_kwh"] - lossy[0]["energy_discharge_kwh"] == 1080.0
    assert [r["soc_pct"] for r in lossy] == socs


@pytest.mark.parametrize(
    "discharge_kw",
    [
        pytest.param(LOSSLESS_KW, id="lossless-battery"),
        pytest.param(LOSSY_KW, id="lossy-battery"),
    ],
)
async def test_scripted_day_balance_and_live(
    mosquitto: MosquittoServer,
    fresh_influx_db: InfluxServer,
    tmp_path: Path,
    discharge_kw: float,
) -> None:
    """The lossless battery gives back the 1200 kWh it took; the lossy one gives 1080 and its
    SoC (published) says 120 kWh were lost on the way, all of it stored PV."""
    parks = tmp_path / "parks.yaml"
    parks.write_text(PARKS_YAML)
    settings = Settings(
        mqtt_url=mosquitto.url,
        influx_url=fresh_influx_db.url,
        influx_db=fresh_influx_db.database,
        parks=parks,
        data_dir=tmp_path / "data",
        metrics_port=0,
        batch_max_wait_ms=20,
        anonymous_read=True,
    )
    registry = load_registry(parks)
    park = registry.park(PARK)
    assert park is not None
    # /live runs on a test clock (the day is in the past); ingest and /balance on the real one
    clock = [to_ns(DAY + timedelta(hours=21, seconds=30))]
    live = LiveState(registry, clock=lambda: clock[0], min_render_interval_s=0.0)
    storage = InfluxStorage(fresh_influx_db.url, database=fresh_influx_db.database)
    ledgers = LedgerStore(f"sqlite:///{tmp_path / 'ledgers.db'}")
    manager_key = ledgers.create_key(ApiRole.MANAGER, "e2e manager", "system").key
    app = create_app(
        settings,
        registry=registry,
        storage=storage,
        ledgers=ledgers,
        live=live,
        refresh_today_in_background=False,
    )
    svc: Services = app.state.services
    service = await start_collector(
        settings,
        serve_metrics=False,
        on_readings=live.apply,
    )
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://t")
    try:
        await wait_for(service.subscriber.connected.is_set, what="MQTT connection")
        r = await client.post(
            f"/api/v1/parks/{PARK}/certificates",
            json={
                "id": "GEC-E2E-1",
                "kind": "gec",
                "mwh": 0.5,
                "valid_from": "2026-11-20T00:00:00+08:00",
                "valid_to": "2026-11-21T00:00:00+08:00",
                "source": "e2e test",
            },
            headers={"Authorization": f"Bearer {manager_key}"},
        )
        assert r.status_code == 201, r.text[:300]

        # --- part 1: 00:00 … 21:00 (k = 0..84) --------------------------------------------
        await publish_all(mosquitto.url, messages(0, 84, discharge_kw))
        await wait_for(
            lambda: service.metrics.readings._value.get() >= 85 * len(DEVICES),
            what="the readings up to 21:00",
        )
        await refresh_today(svc, park)
        await check_live_at_2100(client, discharge_kw)

        # --- part 2: 21:15 … 24:00 (k = 85..96) -------------------------------------------
        await publish_all(mosquitto.url, messages(85, 96, discharge_kw))
        await wait_for(
            lambda: service.metrics.readings._value.get() >= 97 * len(DEVICES),
            what="the whole day",
        )
        clock[0] = to_ns(DAY + timedelta(days=1, seconds=30))
        await refresh_today(svc, park)
        await check_live_at_midnight(client)
        await check_balance(client, discharge_kw)
    finally:
        await client.aclose()
        await service.stop()
        await storage.close()
        ledgers.close()


async def check_live_at_2100(client: httpx.AsyncClient, s_kw: float) -> None:
    """Block E: import 500, wind 200, battery discharging s_kw of stored PV (fraction 1).

    Lossless (s = 300): loads 1000 kW, green 500 → 0.5, 256.1 g/kWh location; market
    certificate coverage of today's imports so far = 500 / 5500 = 1/11 (imports to 21:00:
    A 2400 + B 800 + C 0 + D 800 + E 18–21 1500 = 5500 kWh), so 500/11 kW of the 500 kW import
    is certified: green 200 + 500/11 + 300 = 6000/11 of 1000 → 6/11, (5/11) × 609.6 g/kWh.
    Lossy (s = 270): loads 970, green 470 → 47/97; market (470 + 500/11) / 970.
    """
    r = await client.get(f"/api/v1/parks/{PARK}/live")
    assert r.status_code == 200, r.text[:300]
    doc = r.json()
    assert doc["time"] == "2026-11-20T21:00:30+08:00"
    assert doc["power_kw"] == {
        "grid": 500.0,
        "pv": 0.0,
        "wind": 200.0,
        "storage": s_kw,
        "heat_fuel": 400.0,  # 40 m³/h × 10
        "heat_purchased": HEAT_KW,
        "load": BLDG_KW,  # the sub-meter is shown, never added to the balance
    }
    assert doc["grid_import_kw"] == approx(500.0)
    assert doc["grid_export_kw"] == approx(0.0)
    assert doc["renewable_kw"] == approx(200.0)
    assert doc["storage_discharge_kw"] == approx(s_kw)
    assert doc["storage_charge_kw"] == approx(0.0)
    load_kw = 500.0 + 200.0 + s_kw
    share_p = (200.0 + s_kw) / load_kw
    share_m = (200.0 + 500.0 / 11 + s_kw) / load_kw
    if s_kw == LOSSLESS_KW:  # the formulas, written out
        assert (load_kw, share_p, share_m) == (1000.0, 0.5, approx(6 / 11))
    assert doc["load_kw"] == approx(load_kw)
    assert doc["green_share_physical"] == approx(share_p)
    # location (1 − share) × 0.5122 × 1000 g/kWh (lossless: 256.1); market (1 − share) × 609.6
    assert doc["carbon_intensity_g_per_kwh"] == approx((1 - share_p) * 512.2)
    assert doc["carbon_intensity_location_g_per_kwh"] == approx((1 - share_p) * 512.2)
    assert doc["green_share_market"] == approx(share_m)
    assert doc["carbon_intensity_market_g_per_kwh"] == approx((1 - share_m) * 609.6)
    assert doc["missing_devices"] == [] and doc["stale_devices"] == []
    assert doc["freshness"] == dict.fromkeys(DEVICES, 30.0)
    today = doc["today"]
    # today so far (00:00–21:00): loads A 3600 + B 4000 + C 4000 + D 4000 + E 3 h 3000
    # (lossy: E's loads are 3 × 970 = 2910, plus 3 h × 30 kWh of storage losses = 3000)
    assert today["consumption_kwh"] == approx(18600.0)
    assert today["grid_import_kwh"] == approx(5500.0)
    # green: A 1200 + B 3200 + C 4000 + D 3200 + E 3 h (wind 600 + stored 900) = 13100
    assert today["green_physical_kwh"] == approx(13100.0)
    assert today["green_market_kwh"] == approx(13600.0)
    assert today["certificates_applied_kwh"] == approx(500.0)
    assert today["storage_charge_kwh"] == approx(1200.0)
    assert today["storage_discharge_kwh"] == approx(3 * s_kw)
    assert today["storage_losses_kwh"] == approx(3 * (LOSSLESS_KW - s_kw))
    # the tariff now: 21:00 is peak, 500 kW imported at 0.90 → 450 CNY/h
    tariff = doc["tariff"]
    assert (tariff["name"], tariff["period"]) == ("e2e-tou", "peak")
    assert tariff["import_cny_per_kwh"] == approx(0.9)
    assert tariff["cost_rate_cny_per_h"] == approx(450.0)
    assert tariff["confirmed"] is False
    # today so far: import valley 2400 × 0.3 + flat 1600 × 0.6 + peak (18–21) 1500 × 0.9
    # = 3030; − export 700; gas (720 + 60 × 10) m³ × 3.5 = 4620; heat 42 GJ × 40 = 1680;
    # certificates 25 → 8655
    assert today["cost_cny"] == approx(8655.0)
    assert today["cost"]["by_period"]["peak"] == {"kwh": approx(1500.0), "cny": approx(1350.0)}


async def check_live_at_midnight(client: httpx.AsyncClient) -> None:
    """The 24:00 readings (block F powers): import 400, wind 200, battery idle and empty."""
    doc = (await client.get(f"/api/v1/parks/{PARK}/live")).json()
    assert doc["time"] == "2026-11-21T00:00:30+08:00"
    assert doc["power_kw"] == {
        "grid": 400.0,
        "pv": 0.0,
        "wind": 200.0,
        "storage": 0.0,
        "heat_fuel": 400.0,
        "heat_purchased": HEAT_KW,
        "load": BLDG_KW,
    }
    assert doc["load_kw"] == approx(600.0)
    # green = wind 200 of 600 → 1/3; location (2/3) × 512.2 g/kWh
    assert doc["green_share_physical"] == approx(1 / 3)
    assert doc["carbon_intensity_location_g_per_kwh"] == approx(2 / 3 * 512.2)
    # a new day: nothing imported yet today, so no certificate coverage → (2/3) × 609.6
    assert doc["green_share_market"] == approx(1 / 3)
    assert doc["carbon_intensity_market_g_per_kwh"] == approx(2 / 3 * 609.6)
    assert doc["freshness"] == dict.fromkeys(DEVICES, 30.0)
    assert doc["today"]["consumption_kwh"] == 0.0
    # 00:00 is valley: 400 kW at 0.30 → 120 CNY/h
    assert doc["tariff"]["period"] == "valley"
    assert doc["tariff"]["cost_rate_cny_per_h"] == approx(120.0)


DAY_TOTAL = {
    "consumption_kwh": 20800.0,
    "boundary_consumption_kwh": 20800.0,  # boundary E = I + D + G − X; battery empty at both ends
    "grid_import_kwh": 6800.0,
    "grid_export_kwh": 2000.0,
    "renewable_kwh": 16000.0,
    "green_direct_kwh": 0.0,
    "green_physical_kwh": 14000.0,
    "green_market_kwh": 14500.0,
    "green_share_physical": 14000.0 / 20800.0,
    "green_share_market": 14500.0 / 20800.0,
    "certificates_applied_kwh": 500.0,
    "storage_charge_kwh": 1200.0,
    "unbalanced_kwh": 0.0,
    "scope1_kg": 3113.28,
    "scope2_location_kg": 3482.96,
    "scope2_market_kg": 3840.48,
    "heat_purchased_kg": 5280.0,
    "heat_purchased_gj": 48.0,
    "offsets_kg": 0.0,
    "net_kg": 12233.76,
    "avoided_kg": 1024.4,
    "energy_tce": 5.941712,
    "tco2_per_tce": 12.23376 / 5.941712,
    "completeness": 1.0,
}

#: hourly buckets by hand: {hour: {field: value}}
HOURS = {
    # A, 00–01: I 400, wind 200; all 400 imported are certified (first 4 of 5 intervals)
    0: {
        "consumption_kwh": 600.0,
        "grid_import_kwh": 400.0,
        "green_physical_kwh": 200.0,
        "green_market_kwh": 600.0,
        "green_share_physical": 1 / 3,
        "green_share_market": 1.0,
        "certificates_applied_kwh": 400.0,
        "scope1_kg": 120 * 2.162,  # 259.44
        "scope2_location_kg": 400 * 0.5122,  # 204.88
        "scope2_market_kg": 0.0,
        "heat_purchased_kg": 220.0,  # 2 GJ × 110
        # 259.44 + 0 + 220
        "net_kg": 479.44,
        # (600·0.1229 + 120·1.2143 + 2·34.1) / 1000 = (73.74 + 145.716 + 68.2) / 1000
        "energy_tce": 0.287656,
        "completeness": 1.0,
    },
    # A, 01–02: the certificate's last 100 kWh cover 01:00–01:15
    1: {
        "certificates_applied_kwh": 100.0,
        "green_market_kwh": 300.0,
        "scope2_market_kg": 300 * 0.6096,  # 182.88
    },
    # C, 11–12: import 0, export 500, G 1800, battery charges 300 (all green)
    11: {
        "consumption_kwh": 1000.0,  # loads (docs/accounting.md §2)
        "boundary_consumption_kwh": 1300.0,  # boundary E = 0 + 1800 − 500; the 300 sit in storage
        "grid_import_kwh": 0.0,
        "grid_export_kwh": 500.0,
        "renewable_kwh": 1800.0,
        "green_physical_kwh": 1000.0,
        "green_share_physical": 1.0,
        "storage_charge_kwh": 300.0,
        "scope2_location_kg": 0.0,
        "avoided_kg": 500 * 0.5122,  # 256.1
        "scope1_kg": 40 * 2.162,  # 86.48
    },
    # E, 19–20: import 500, wind 200, 300 kWh of stored PV discharged
    19: {
        "consumption_kwh": 1000.0,
        "boundary_consumption_kwh": 700.0,  # boundary E = 500 + 200
        "green_physical_kwh": 500.0,
        "green_market_kwh": 500.0,  # the certificate was used up at 01:15
        "green_share_physical": 0.5,
        "scope2_location_kg": 500 * 0.5122,  # 256.1
        "scope2_market_kg": 500 * 0.6096,  # 304.8
        # (1000·0.1229 + 40·1.2143 + 2·34.1) / 1000 = (122.9 + 48.572 + 68.2) / 1000
        "energy_tce": 0.239672,
    },
    # F, 23–24: import 400, wind 200
    23: {
        "consumption_kwh": 600.0,
        "green_physical_kwh": 200.0,
        "green_share_physical": 1 / 3,
        "scope2_market_kg": 400 * 0.6096,  # 243.84
        "completeness": 1.0,
    },
}


def assert_fields(got: dict[str, Any], expected: dict[str, float], where: str) -> None:
    wrong = {
        k: (v, got.get(k)) for k, v in expected.items() if got.get(k) is None or got[k] != approx(v)
    }
    assert not wrong, f"{where}: field: (expected, got): {wrong}"


async def check_balance(client: httpx.AsyncClient, s_kw: float) -> None:
    # The lossy battery discharges 4 × s_kw over block E and loses the rest of its 1200 kWh;
    # its losses are consumption and green (stored PV), so every other figure is unchanged.
    day_total = {
        **DAY_TOTAL,
        "storage_discharge_kwh": 4 * s_kw,  # 1200 / 1080
        "storage_losses_kwh": 4 * (LOSSLESS_KW - s_kw),  # 0 / 120
    }
    hours = {**HOURS, 19: {**HOURS[19], "storage_discharge_kwh": s_kw}}
    hours[19]["storage_losses_kwh"] = LOSSLESS_KW - s_kw  # 0 / 30
    params = {
        "start": "2026-11-20T00:00:00+08:00",
        "end": "2026-11-21T00:00:00+08:00",
        "every": "1h",
    }
    r = await client.get(f"/api/v1/parks/{PARK}/balance", params=params)
    assert r.status_code == 200, r.text[:300]
    doc = r.json()
    assert doc["park"] == PARK and doc["factor_set"] == "cn-2023"
    assert doc["warnings"] == []
    assert len(doc["buckets"]) == 24
    assert doc["buckets"][0]["start"] == "2026-11-20T00:00:00+08:00"
    assert doc["buckets"][23]["end"] == "2026-11-21T00:00:00+08:00"
    assert_fields(doc["total"], day_total, "total (1h)")
    assert doc["total"]["submeter_kwh"] == {"load": approx(7200.0)}
    for hour, expected in hours.items():
        assert_fields(doc["buckets"][hour], expected, f"bucket {hour:02d}:00")
    # every hourly bucket: consumption = loads, boundary = I + G − X (docs/accounting.md §2),
    # green ≤ consumption
    for b in doc["buckets"]:
        spec_e = b["grid_import_kwh"] + b["renewable_kwh"] - b["grid_export_kwh"]
        assert b["boundary_consumption_kwh"] == approx(spec_e)
        assert b["green_market_kwh"] <= b["consumption_kwh"] + 1e-6
    # the certificate trail: 100 kWh in each of the first five quarter hours
    trail = doc["certificate_trail"]
    assert [t["kwh"] for t in trail] == [approx(100.0)] * 5
    assert trail[0]["start_ns"] == to_ns(DAY)
    assert trail[-1]["end_ns"] == to_ns(DAY + 5 * QUARTER)
    assert {t["certificate_id"] for t in trail} == {"GEC-E2E-1"}
    check_cost(doc, s_kw)

    # the same day as one daily bucket (the cached day chain): the same totals
    r = await client.get(f"/api/v1/parks/{PARK}/balance", params={**params, "every": "1d"})
    assert r.status_code == 200, r.text[:300]
    daily = r.json()
    assert len(daily["buckets"]) == 1
    assert_fields(daily["total"], day_total, "total (1d)")
    assert_fields(daily["buckets"][0], day_total, "daily bucket")
    check_cost(daily, s_kw)
    for b in doc["buckets"][:1]:
        assert b["cost"]["demand_charge_cny"] == 0.0


def check_cost(doc: dict[str, Any], s_kw: float) -> None:
    """The day's cost and savings by hand (module docstring)."""
    c = doc["total"]["cost"]
    assert c["by_period"] == {
        "valley": {"kwh": approx(3200.0), "cny": approx(960.0)},
        "flat": {"kwh": approx(1600.0), "cny": approx(960.0)},
        "peak": {"kwh": approx(2000.0), "cny": approx(1800.0)},
    }
    assert c["import_cny"] == approx(3720.0)
    assert c["export_credit_cny"] == approx(700.0)
    assert c["fuel_cny"] == approx(5040.0)
    assert c["heat_cny"] == approx(1920.0)
    assert c["certificate_cny"] == approx(25.0)
    assert c["energy_cny"] == approx(10005.0)
    assert doc["total"]["cost_cny"] == approx(10005.0)
    assert c["demand_peak_kw"] == approx(500.0)
    assert c["demand_charge_cny"] == 0.0
    assert c["demand_months"] == {
        "2026-11": {
            "peak_kw": approx(500.0),
            "at": "2026-11-20T10:00:00+00:00",
            "charge_cny": approx(15000.0),
            "complete": False,
        }
    }
    storage = 360.0 if s_kw == LOSSLESS_KW else 252.0
    assert c["saved_cny"] == {
        "renewable": approx(8860.0),
        "green_direct": approx(0.0),
        "storage": approx(storage),
        "total": approx(8860.0 + storage),
    }
    if doc["every"] == "1h":
        hours = doc["buckets"]
        # 00–01: 400 kWh valley 120 + 0.4 MWh certified 20 + gas 120 m³ 420 + heat 2 GJ 80
        assert hours[0]["cost_cny"] == approx(640.0)
        # 11–12: export 500 × 0.35 = −175 + gas 40 m³ 140 + heat 80
        assert hours[11]["cost_cny"] == approx(45.0)
        # 19–20: 500 kWh peak 450 + 140 + 80
        assert hours[19]["cost_cny"] == approx(670.0)
        assert sum(h["cost_cny"] for h in hours) == approx(10005.0)
