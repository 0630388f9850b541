"""`/api/v1/factor-sets` on a real influxd + SQL store, and `/balance` using a user set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from app.accounting.buckets import to_ns
from app.config import Settings
from app.ledgers import ApiRole, LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.registry import parse_registry
from app.storage.base import WriteBatch
from app.storage.influx import InfluxStorage
from tests.api_support import REGISTRY_YAML, Api, iv
from tests.fixtures.influx import InfluxServer

CUSTOM = "acme-2024"
CUSTOM_NE = 0.5  # kgCO2/kWh, the overriding northeast grid factor
CN2023_NE = 0.5122
CN2023_RES = 0.6096

# the shared test registry plus a park on the custom set and one on a set nobody defined
PARKS_YAML = (
    REGISTRY_YAML
    + f"""
  - id: acme
    timezone: Asia/Shanghai
    grid_region: northeast
    factor_set: {CUSTOM}
    interval_minutes: 60
    devices:
      - {{id: grid-a, role: grid}}
  - id: ghost
    timezone: Asia/Shanghai
    grid_region: northeast
    factor_set: no-such-set
    interval_minutes: 60
    devices:
      - {{id: grid-g, role: grid}}
"""
)

NOW = datetime.fromisoformat("2026-07-01T00:00:00+08:00")
DAY = {
    "start": "2026-06-01T00:00:00+08:00",
    "end": "2026-06-02T00:00:00+08:00",
    "every": "1d",
}
NE_OVERRIDE = {"value": CUSTOM_NE, "source": "ACME supplier contract 2024 (test)", "year": 2024}


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    reg = parse_registry(PARKS_YAML)
    storage = InfluxStorage(fresh_influx_db.url, database=fresh_influx_db.database)
    ledgers = LedgerStore(sqlite_url)
    clock = [to_ns(NOW)]
    live = LiveState(reg, clock=lambda: clock[0], min_render_interval_s=0.0)
    app = create_app(
        Settings(data_dir=tmp_path, parks=tmp_path / "parks.yaml"),
        registry=reg,
        storage=storage,
        ledgers=ledgers,
        live=live,
        refresh_today_in_background=False,
    )
    app.state.services.balance.clock = lambda: clock[0]
    app.state.services.balance.cache.clock = lambda: clock[0]
    keys = {r.value: ledgers.create_key(r, f"test {r.value}", "system").key for r in ApiRole}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        try:
            yield Api(app, client, storage, ledgers, live, reg, keys, clock)
        finally:
            await storage.close()
            ledgers.close()


async def post(api: Api, body: dict[str, object], role: str = "admin") -> httpx.Response:
    return await api.client.post("/api/v1/factor-sets", json=body, headers=api.auth(role))


async def create_custom(api: Api) -> httpx.Response:
    body = {
        "name": CUSTOM,
        "based_on": "cn-2023",
        "year": 2024,
        "description": "cn-2023 with the contracted northeast factor",
        "overrides": {"grid.northeast": NE_OVERRIDE},
        "comment": "contract 2024",
    }
    return await post(api, body)


async def test_list_and_get_builtins(api: Api) -> None:
    r = await api.get("/api/v1/factor-sets")
    assert r.status_code == 200, r.text
    items = {i["name"]: i for i in r.json()["items"]}
    assert {"cn-2023", "cn-2022"} <= set(items)
    assert items["cn-2023"]["builtin"] is True and items["cn-2023"]["year"] == 2023
    assert "MEE" in items["cn-2023"]["grid_source"]
    r = await api.get("/api/v1/factor-sets/cn-2022")
    assert r.status_code == 200
    doc = r.json()
    assert doc["name"] == "cn-2022" and doc["builtin"] is True
    assert doc["grid"]["northeast"] == {
        "value": 0.5564,
        "unit": "kgCO2/kWh",
        "source": doc["grid"]["northeast"]["source"],
        "year": 2022,
    }
    assert doc["residual"]["value"] == 0.5856
    assert doc["fuels"]["natural_gas/gas_m3"]["co2"]["unit"] == "kgCO2/m3"
    assert doc["electricity_coal"] == {
        "value": 0.1229,
        "unit": "kgce/kWh",
        "source": doc["electricity_coal"]["source"],
        "year": 2022,
    }
    for f in doc["grid"].values():
        assert f["source"].strip() and f["unit"] == "kgCO2/kWh"
    assert (await api.get("/api/v1/factor-sets/nope")).status_code == 404
    assert (await api.client.get("/api/v1/factor-sets")).status_code == 401


async def test_create_custom_set_and_refusals(api: Api) -> None:
    r = await create_custom(api)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["name"] == CUSTOM and doc["version"] == 1 and doc["year"] == 2024
    assert doc["grid"]["northeast"] == {"unit": "kgCO2/kWh", **NE_OVERRIDE}
    # everything not overridden is inherited from cn-2023
    assert doc["grid"]["north"]["value"] == 0.6361
    assert doc["residual"]["value"] == CN2023_RES

    got = (await api.get(f"/api/v1/factor-sets/{CUSTOM}")).json()
    assert got["grid"]["northeast"]["value"] == CUSTOM_NE and got["builtin"] is False
    items = {i["name"]: i for i in (await api.get("/api/v1/factor-sets")).json()["items"]}
    assert items[CUSTOM]["builtin"] is False and items[CUSTOM]["version"] == 1

    # the change is audited with the admin key's id as actor
    admin_id = next(k.id for k in api.ledgers.list_keys() if k.role == ApiRole.ADMIN)
    puts = [e for e in api.ledgers.list_audit() if e.action == "factor_set.put"]
    assert len(puts) == 1
    assert puts[0].actor == admin_id and puts[0].object == f"factor_set/{CUSTOM}"
    assert puts[0].details["version"] == 1 and puts[0].details["comment"] == "contract 2024"

    assert (await create_custom(api)).status_code == 409  # never rewritten in place
    r = await post(api, {"name": "cn-2023", "overrides": {"grid.northeast": NE_OVERRIDE}})
    assert r.status_code == 409
    r = await post(api, {"name": "x-1", "overrides": {}}, role="viewer")
    assert r.status_code == 403
    r = await post(api, {"name": "x-2", "overrides": {}}, role="manager")
    assert r.status_code == 403
    # invalid: unknown base, unknown key, negative value, missing source, bad name
    bad: list[dict[str, object]] = [
        {"name": "x-3", "based_on": "nope"},
        {"name": "x-4", "overrides": {"grid": NE_OVERRIDE}},
        {"name": "x-5", "overrides": {"grid.east": {**NE_OVERRIDE, "value": -1}}},
        {"name": "x-6", "overrides": {"heat": {"value": 1.0, "source": " ", "year": 2024}}},
        {"name": "has space", "overrides": {}},
        {"name": "x-9", "overrides": {"heat": {"value": 1.0, "source": "a\x00b", "year": 2024}}},
        {"name": "x-10", "overrides": {"grid.a b": NE_OVERRIDE}},
        {"name": "x-7", "overrides": {"grid.mars": {"value": 1.0, "source": "s", "year": 2024}}},
    ]
    for body in bad[:-1]:
        assert (await post(api, body)).status_code == 422, body
    # a new region with its unit given is fine; without a unit the base has none to inherit
    r = await post(
        api, {"name": "x-8", "overrides": {"grid.mars": {"unit": "kgCO2/kWh", **NE_OVERRIDE}}}
    )
    assert r.status_code == 201, r.text
    assert (await post(api, bad[-1])).status_code == 422
    # derived from a user set: inherits its northeast factor
    r = await post(api, {"name": "acme-2025", "based_on": CUSTOM, "overrides": {}})
    assert r.status_code == 201 and r.json()["grid"]["northeast"]["value"] == CUSTOM_NE
    assert len([e for e in api.ledgers.list_audit() if e.action == "factor_set.put"]) == 3


async def test_balance_uses_the_custom_set(api: Api) -> None:
    park = api.registry.park("acme")
    assert park is not None
    d0 = datetime.fromisoformat("2026-06-01T00:00:00+08:00")
    d1 = datetime.fromisoformat("2026-06-01T01:00:00+08:00")
    rows = [
        iv(park, "grid-a", d0, 60, energy_import_kwh=100.0, energy_export_kwh=0.0),
        iv(park, "grid-a", d1, 60, energy_import_kwh=40.0, energy_export_kwh=0.0),
    ]
    await api.storage.write(WriteBatch(intervals=rows))
    url = "/api/v1/parks/acme/balance"
    # before the set exists the park's balance is a clear client-side error, not a 500
    r = await api.get(url, params=DAY)
    assert 400 <= r.status_code < 500, r.text
    assert CUSTOM in r.json()["detail"]

    assert (await create_custom(api)).status_code == 201
    r = await api.get(url, params=DAY)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["factor_set"] == CUSTOM
    t = doc["total"]
    assert t["grid_import_kwh"] == pytest.approx(140.0)
    # 140 kWh × 0.5 kgCO2/kWh (custom), not × 0.5122 (cn-2023 = 71.708)
    assert t["scope2_location_kg"] == pytest.approx(70.0)
    # residual factor is inherited from cn-2023: 140 × 0.6096
    assert t["scope2_market_kg"] == pytest.approx(140 * CN2023_RES)

    # a park on a built-in set is unaffected
    demo = await api.get("/api/v1/parks/demo/balance", params=DAY)
    assert demo.status_code == 200 and demo.json()["factor_set"] == "cn-2023"


async def test_unknown_factor_set_is_a_client_error(api: Api) -> None:
    r = await api.get("/api/v1/parks/ghost/balance", params=DAY)
    assert 400 <= r.status_code < 500, r.text
    assert "no-such-set" in r.json()["detail"]


async def test_live_and_evaluation_resolve_sets(api: Api) -> None:
    assert (await create_custom(api)).status_code == 201
    r = await api.get("/api/v1/parks/acme/live")
    assert r.status_code == 200, r.text
    assert r.json()["factor_set"] == CUSTOM
    r = await api.get("/api/v1/parks/acme/evaluation", params={"year": 2026})
    assert r.status_code == 200, r.text
    assert r.json()["factor_set"]["name"] == CUSTOM
    r = await api.get("/api/v1/parks/ghost/evaluation", params={"year": 2026})
    assert r.status_code == 422 and "no-such-set" in r.json()["detail"]
    for url in ("/api/v1/parks/ghost/live", "/api/v1/parks/ghost/live/stream"):
        r = await api.get(url)
        assert r.status_code == 422 and "no-such-set" in r.json()["detail"]
