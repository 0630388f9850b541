"""Every panel query of every dashboard, macros substituted as Grafana does, on a real influxd."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.intervals.models import IntervalEnergy
from app.storage import InfluxStorage, WriteBatch
from app.telemetry.models import DeadLetter, Reading, RejectReason
from tests.fixtures.influx import InfluxServer
from tests.test_dashboards_macros import (
    duration_ms,
    format_variable,
    interpolate,
    load_all,
    panels,
    variables,
)

TZ = ZoneInfo("Asia/Shanghai")
DAY_START = datetime(2026, 11, 23, tzinfo=TZ)
START_MS = int(DAY_START.timestamp() * 1000)
END_MS = int((DAY_START + timedelta(days=1)).timestamp() * 1000)
PARK = "shenfu-demo"
OTHER = "park.b"  # a dot: a park variable substituted raw must still not match "parkXb"


def _ns(hour: int, minute: int) -> int:
    return int((DAY_START + timedelta(hours=hour, minutes=minute)).timestamp()) * 1_000_000_000


# Per 15-min interval (4 intervals, 08:00-09:00 local), by device: role and values.
INTERVAL_VALUES: dict[str, tuple[str, dict[str, float]]] = {
    "grid-main": ("grid", {"energy_import_kwh": 10.0, "energy_export_kwh": 1.0}),
    "pv-roof-a": ("pv", {"energy_kwh": 5.0}),
    "wind-1": ("wind", {"energy_kwh": 2.0}),
    "green-line": ("green_direct", {"energy_import_kwh": 3.0}),
    "bess-1": ("storage", {"energy_charge_kwh": 1.0, "energy_discharge_kwh": 0.5}),
    "boiler-gas-1": ("heat_fuel", {"gas_m3": 4.0, "heat_kwh": 30.0}),
    "dh-inlet": ("heat_purchased", {"heat_gj": 0.5}),
    "hp-1": ("heat_pump", {"energy_import_kwh": 2.0, "heat_kwh": 6.0}),
}
# Hand totals over the 4 intervals: G = 4 × (5 + 2) = 28, D = 12, I = 40, X = 4.
# Green (physical) = G + D − X = 36; E = I + D + G − X = 76 → 47.3684 %.
GREEN_PHYS_PCT = 36 / 76 * 100
# 0.01 MWh of certificates = 10 kWh: (36 + 10) / 76
CERT_MWH = "0.01"
GREEN_MKT_PCT = 46 / 76 * 100


def _batch() -> WriteBatch:
    readings: list[Reading] = []
    for minute in range(0, 60, 5):
        ts = _ns(8, minute)
        readings.append(Reading(PARK, "grid-main", ts, {"power_kw": 40.0 + minute}))
        readings.append(Reading(PARK, "pv-roof-a", ts, {"power_kw": 20.0, "energy_kwh": 1.0}))
        readings.append(Reading(PARK, "bess-1", ts, {"power_kw": -4.0, "soc_pct": 50.0 + minute}))
        readings.append(Reading(OTHER, "grid-x", ts, {"power_kw": 999.0, "soc_pct": 1.0}))
        # the meters without power_kw publish counters only
        for device in ("wind-1", "green-line", "boiler-gas-1", "dh-inlet", "hp-1"):
            readings.append(Reading(PARK, device, ts, {"energy_kwh": float(minute)}))
    intervals: list[IntervalEnergy] = []
    for minute in (0, 15, 30, 45):
        start = _ns(8, minute)
        for device, (role, values) in INTERVAL_VALUES.items():
            gap = device == "hp-1" and minute == 30
            intervals.append(
                IntervalEnergy(
                    PARK,
                    device,
                    role,
                    start,
                    start + 900 * 1_000_000_000,
                    dict(values),
                    estimated=gap,
                    flags=("gap",) if gap else (),
                )
            )
        # another park's grid: must never leak into shenfu-demo's figures
        intervals.append(
            IntervalEnergy(
                OTHER, "grid-x", "grid", start, start + 900 * 10**9, {"energy_import_kwh": 1e6}
            )
        )
    deadletters = [
        DeadLetter(_ns(9, 1), f"lingtan/v1/{PARK}/grid-main/telemetry", PARK, "grid-main",
                   RejectReason.INVALID_JSON, "not JSON", b"{oops"),
        DeadLetter(_ns(9, 2), f"lingtan/v1/{PARK}/grid-main/telemetry", PARK, "grid-main",
                   RejectReason.INVALID_JSON, "not JSON", b"{oops again"),
        DeadLetter(_ns(9, 3), f"lingtan/v1/{PARK}/pv-roof-a/telemetry", PARK, "pv-roof-a",
                   RejectReason.OUT_OF_RANGE, "power_kw out of range", b'{"power_kw": 1e12}'),
        DeadLetter(_ns(9, 4), "lingtan/v1/bad topic", None, None,
                   RejectReason.BAD_TOPIC, "topic does not match", b"{}"),
    ]  # fmt: skip
    return WriteBatch(readings=readings, intervals=intervals, deadletters=deadletters)


@pytest.fixture
async def seeded(fresh_influx_db: InfluxServer) -> AsyncIterator[InfluxServer]:
    storage = InfluxStorage(fresh_influx_db.url, fresh_influx_db.database, timeout_s=10)
    try:
        await storage.write(_batch())
    finally:
        await storage.close()
    yield fresh_influx_db


# (dashboard uid, panel id, refId) -> (columns, tag keys of the series). Written by hand
# from what each panel is meant to show; every target must be listed here.
EXPECTED: dict[tuple[str, int, str], tuple[list[str], set[str]]] = {
    ("lingtan-park-overview", 1, "A"): (["time", "mean"], {"device"}),
    ("lingtan-park-overview", 2, "A"): (["time", "last"], {"device"}),
    ("lingtan-park-overview", 3, "A"): (["time", "green_share_phys_pct"], set()),
    ("lingtan-park-overview", 4, "A"): (["time", "green_share_mkt_pct"], set()),
    ("lingtan-park-overview", 5, "A"): (["time", "green_share_phys_pct"], set()),
    ("lingtan-park-overview", 6, "A"): (
        ["time", "import", "export", "generation", "charge", "discharge"],
        {"role"},
    ),
    ("lingtan-park-overview", 7, "A"): (["time", "mean"], {"device"}),
    ("lingtan-park-overview", 8, "A"): (["time", "heat_kwh", "heat_gj_as_kwh"], {"role"}),
    ("lingtan-carbon", 1, "A"): (
        ["time", "scope2_location_kgco2", "scope2_market_before_certificates_kgco2"],
        set(),
    ),
    ("lingtan-carbon", 1, "B"): (["time", "scope1_gas_kgco2"], set()),
    ("lingtan-carbon", 1, "C"): (["time", "purchased_heat_kgco2"], set()),
    ("lingtan-carbon", 2, "A"): (
        ["time", "scope2_location_kgco2", "scope2_market_before_certificates_kgco2"],
        set(),
    ),
    ("lingtan-carbon", 2, "B"): (["time", "scope1_gas_kgco2"], set()),
    ("lingtan-carbon", 2, "C"): (["time", "purchased_heat_kgco2"], set()),
    ("lingtan-carbon", 3, "A"): (["time", "energy_tce"], set()),
    ("lingtan-carbon", 5, "A"): (["time", "energy_cost_cny"], set()),
    ("lingtan-carbon", 4, "A"): (
        [
            "time",
            "import_kwh",
            "export_kwh",
            "generation_kwh",
            "charge_kwh",
            "discharge_kwh",
            "heat_kwh",
            "heat_gj",
            "gas_m3",
        ],
        {"role"},
    ),
    ("lingtan-data-quality", 1, "A"): (["time", "power_kw"], {"device"}),
    ("lingtan-data-quality", 2, "A"): (["time", "count"], {"device"}),
    ("lingtan-data-quality", 3, "A"): (["time", "estimated"], {"device"}),
    ("lingtan-data-quality", 4, "A"): (["time", "device", "role", "flags", "estimated"], set()),
    ("lingtan-data-quality", 5, "A"): (["time", "count"], {"reason"}),
    ("lingtan-data-quality", 6, "A"): (["time", "dead_letters"], {"reason"}),
    ("lingtan-data-quality", 7, "A"): (
        ["time", "reason", "topic", "device", "detail", "raw_len"],
        set(),
    ),
}

DASHBOARDS = load_all()


def _tag_values(server: InfluxServer, query: str) -> list[str]:
    body = server.query(query)
    series = body["results"][0].get("series", [])
    return [row[1] for s in series for row in s["values"]]


def _values(
    server: InfluxServer,
    dashboard: dict[str, Any],
    *,
    park_escaped: bool,
    device: str | None = None,
) -> dict[str, str]:
    """Formatted variable values: park selected, device All (or one), constants as set."""
    out: dict[str, str] = {}
    for name, var in variables(dashboard).items():
        if var["type"] in ("constant", "textbox"):
            out[name] = format_variable(var, str(var["query"]))
    park_var = variables(dashboard)["park"]
    assert PARK in _tag_values(server, park_var["query"])
    out["park"] = format_variable({"multi": park_escaped}, PARK)
    if "device" in variables(dashboard):
        dev_var = variables(dashboard)["device"]
        all_devices = _tag_values(server, interpolate(dev_var["query"], **_macros(out, "15m")))
        assert set(all_devices) == set(INTERVAL_VALUES)
        # "All" without a custom allValue: Grafana sends every value, as one regex group
        out["device"] = format_variable(dev_var, [device] if device else all_devices)
    if "certificates_mwh" in out:
        out["certificates_mwh"] = CERT_MWH
    return out


def _macros(values: dict[str, str], interval: str) -> dict[str, Any]:
    return {
        "start_ms": START_MS,
        "end_ms": END_MS,
        "interval": interval,
        "interval_ms": duration_ms(interval),
        "values": values,
    }


def _run_panels(
    server: InfluxServer, uid: str, *, park_escaped: bool
) -> dict[tuple[int, str], list[dict[str, Any]]]:
    dashboard = DASHBOARDS[uid]
    values = _values(server, dashboard, park_escaped=park_escaped)
    results: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            # Grafana's $__interval is at least the panel's min interval
            q = interpolate(target["query"], **_macros(values, panel.get("interval", "15m")))
            assert "$" not in q.replace("$/", ""), q  # every macro and variable replaced
            body = server.query(q)
            results[(panel["id"], target["refId"])] = body["results"][0].get("series", [])
    return results


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
@pytest.mark.parametrize("park_escaped", [False, True])
async def test_every_target_returns_series_of_its_shape(
    seeded: InfluxServer, uid: str, park_escaped: bool
) -> None:
    results = _run_panels(seeded, uid, park_escaped=park_escaped)
    expected_keys = {(p, r) for (u, p, r) in EXPECTED if u == uid}
    assert set(results) == expected_keys  # no target without an expectation, and vice versa
    for (pid, ref), series in results.items():
        columns, tags = EXPECTED[(uid, pid, ref)]
        assert series, f"{uid} panel {pid} {ref}: no series"
        for s in series:
            assert s["columns"] == columns, (uid, pid, ref)
            assert set(s.get("tags", {})) == tags, (uid, pid, ref)
            assert s["values"], (uid, pid, ref)


def _only_value(series: list[dict[str, Any]], column: str) -> float:
    assert len(series) == 1
    rows = [r for r in series[0]["values"] if r[series[0]["columns"].index(column)] is not None]
    assert len(rows) == 1, rows
    return float(rows[0][series[0]["columns"].index(column)])


def _by_tag(series: list[dict[str, Any]], tag: str, column: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in series:
        i = s["columns"].index(column)
        present = [float(r[i]) for r in s["values"] if r[i] is not None]
        if present:  # a series without this field (another role) is all nulls
            out[s["tags"][tag]] = sum(present)
    return out


async def test_park_overview_figures(seeded: InfluxServer) -> None:
    r = _run_panels(seeded, "lingtan-park-overview", park_escaped=False)
    assert _only_value(r[(3, "A")], "green_share_phys_pct") == pytest.approx(GREEN_PHYS_PCT)
    assert _only_value(r[(4, "A")], "green_share_mkt_pct") == pytest.approx(GREEN_MKT_PCT)
    # power: only this park's three devices; grid-main's last reading is at 08:55 → 95 kW
    last = {s["tags"]["device"]: s["values"][0][1] for s in r[(2, "A")]}
    assert last == {"grid-main": 95.0, "pv-roof-a": 20.0, "bess-1": -4.0}
    # electricity by role, summed over the buckets
    assert _by_tag(r[(6, "A")], "role", "import") == {
        "grid": 40.0,
        "green_direct": 12.0,
    }
    assert _by_tag(r[(6, "A")], "role", "generation") == {"pv": 20.0, "wind": 8.0}
    # heating: 4 × 0.5 GJ at 277.7778 kWh/GJ; heat pump and boiler heat in kWh
    assert _by_tag(r[(8, "A")], "role", "heat_gj_as_kwh") == {
        "heat_purchased": pytest.approx(2.0 * 277.7778)
    }
    assert _by_tag(r[(8, "A")], "role", "heat_kwh") == {"heat_fuel": 120.0, "heat_pump": 24.0}
    # SoC: only bess-1 of this park reports it (park.b's soc_pct stays out)
    assert {s["tags"]["device"] for s in r[(7, "A")]} == {"bess-1"}


async def test_carbon_figures(seeded: InfluxServer) -> None:
    r = _run_panels(seeded, "lingtan-carbon", park_escaped=False)
    # 40 kWh grid import × 0.5306 / × 0.6096; 16 m³ gas × 2.162; 2 GJ heat × 110 kgCO2/GJ
    assert _only_value(r[(2, "A")], "scope2_location_kgco2") == pytest.approx(21.224)
    assert _only_value(r[(2, "A")], "scope2_market_before_certificates_kgco2") == pytest.approx(
        24.384
    )
    assert _only_value(r[(2, "B")], "scope1_gas_kgco2") == pytest.approx(34.592)
    assert _only_value(r[(2, "C")], "purchased_heat_kgco2") == pytest.approx(220.0)
    # daily buckets in Asia/Shanghai: everything falls on 2026-11-23 local
    day = r[(1, "A")][0]["values"]
    assert len(day) == 1 and day[0][0] == DAY_START.timestamp() * 1_000_000_000
    # tce: 76 kWh × 0.1229 + 16 m³ × 1.2143 + 2 GJ × 34.1 = 96.9692 kgce
    assert _only_value(r[(3, "A")], "energy_tce") == pytest.approx(0.0969692)
    assert _by_tag(r[(4, "A")], "role", "gas_m3") == {"heat_fuel": 16.0}
    assert _by_tag(r[(4, "A")], "role", "import_kwh")["grid"] == 40.0
    # cost at the dashboard's example prices: 40 kWh × 0.60 − 4 kWh exported × 0.3749
    # + 16 m³ × 3.50 + 2 GJ × 40 = 24 − 1.4996 + 56 + 80
    assert _only_value(r[(5, "A")], "energy_cost_cny") == pytest.approx(158.5004)


async def test_data_quality_figures(seeded: InfluxServer) -> None:
    r = _run_panels(seeded, "lingtan-data-quality", park_escaped=False)
    fresh = {s["tags"]["device"]: s["values"][0][0] for s in r[(1, "A")]}
    assert fresh == {d: _ns(8, 55) for d in ("grid-main", "pv-roof-a", "bess-1")}
    assert _by_tag(r[(2, "A")], "device", "count") == {
        "grid-main": 12.0,
        "pv-roof-a": 12.0,
        "bess-1": 12.0,
    }
    # the one estimated interval: hp-1 at 08:30, flagged "gap"
    assert _by_tag(r[(3, "A")], "device", "estimated") == {"hp-1": 1.0}
    flagged = r[(4, "A")]
    assert len(flagged) == 1
    assert flagged[0]["values"] == [[_ns(8, 30), "hp-1", "heat_pump", "gap", True]]
    assert _by_tag(r[(5, "A")], "reason", "count") == {"invalid_json": 2.0, "out_of_range": 1.0}
    assert _by_tag(r[(6, "A")], "reason", "dead_letters") == {"bad_topic": 1.0}
    latest = r[(7, "A")][0]
    assert [row[1] for row in latest["values"]] == ["out_of_range", "invalid_json", "invalid_json"]
