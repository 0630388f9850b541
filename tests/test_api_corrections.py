"""Manual corrections through the API on a real influxd: balance before/after/revoked, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.accounting.buckets import to_ns
from app.storage.base import WriteBatch
from tests.api_support import Api, iv, make_api
from tests.fixtures.influx import InfluxServer

DAY = {"start": "2026-06-01T00:00:00+08:00", "end": "2026-06-02T00:00:00+08:00"}
URL = "/api/v1/parks/demo/corrections"
BALANCE = "/api/v1/parks/demo/balance"


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in make_api(
        fresh_influx_db.url,
        fresh_influx_db.database,
        sqlite_url,
        tmp_path,
        settings={"max_balance_span": timedelta(days=400), "max_buckets": 10_000},
        now=datetime.fromisoformat("2026-07-01T00:00:00+08:00"),
    ):
        yield a


async def write_day(api: Api) -> None:
    """2026-06-01, Asia/Shanghai, 1-h intervals. grid-main imports 100 at 00:00, 30 at 10:00
    and nothing is stored for 11:00: the meter was replaced at 10:30 without a reset flag, so
    40 kWh of imports over 10:00–12:00 were lost. pv-1 makes 50 at 10:00."""
    park = api.registry.park("demo")
    assert park is not None
    d = datetime.fromisoformat("2026-06-01T00:00:00+08:00")
    rows = [
        iv(park, "grid-main", d, 60, energy_import_kwh=100.0, energy_export_kwh=0.0),
        iv(park, "grid-main", d + timedelta(hours=10), 60, energy_import_kwh=30.0),
        iv(park, "pv-1", d + timedelta(hours=10), 60, energy_kwh=50.0),
    ]
    await api.storage.write(WriteBatch(intervals=rows))


def correction(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "COR-1",
        "device": "grid-main",
        "quantity": "energy_import_kwh",
        "start": "2026-06-01T10:00:00+08:00",
        "end": "2026-06-01T12:00:00+08:00",
        "kind": "add",
        "amount": 40.0,
        "reason": "meter replaced at 10:30 without a reset flag",
    }
    body.update(over)
    return body


async def balance(api: Api, every: str) -> dict[str, Any]:
    r = await api.get(BALANCE, params={**DAY, "every": every})
    assert r.status_code == 200, r.text[:300]
    doc: dict[str, Any] = r.json()
    return doc


async def test_add_correction_changes_balance_audited_and_revocable(api: Api) -> None:
    await write_day(api)
    # Before: imports 100 + 30 = 130; consumption 130 + 50 = 180.
    day = await balance(api, "1d")
    assert day["total"]["grid_import_kwh"] == pytest.approx(130.0)
    assert day["total"]["consumption_kwh"] == pytest.approx(180.0)
    hours = await balance(api, "1h")
    assert hours["buckets"][10]["grid_import_kwh"] == pytest.approx(30.0)
    assert hours["buckets"][11]["grid_import_kwh"] == pytest.approx(0.0)

    r = await api.client.post(URL, json=correction(), headers=api.auth("manager"))
    assert r.status_code == 201, r.text[:300]
    rec = r.json()
    assert rec["id"] == "COR-1" and rec["park"] == "demo" and rec["seq"] == 1
    assert rec["revoked_at"] is None

    # After: +40 spread over the two hours, 20 each: 10:00 = 50, 11:00 = 20 (a new row);
    # the day (served from the settled-day chain) is 170 import, 220 consumption.
    day = await balance(api, "1d")
    assert day["total"]["grid_import_kwh"] == pytest.approx(170.0)
    assert day["total"]["consumption_kwh"] == pytest.approx(220.0)
    # location-based scope 2: 170 × 0.5122 = 87.074 kg
    assert day["total"]["scope2_location_kg"] == pytest.approx(87.074)
    hours = await balance(api, "1h")
    assert hours["buckets"][0]["grid_import_kwh"] == pytest.approx(100.0)
    assert hours["buckets"][10]["grid_import_kwh"] == pytest.approx(50.0)
    assert hours["buckets"][11]["grid_import_kwh"] == pytest.approx(20.0)
    assert hours["total"]["grid_import_kwh"] == pytest.approx(170.0)

    # Raw data is never edited: the stored interval energies are unchanged.
    park = api.registry.park("demo")
    assert park is not None
    d0 = to_ns(datetime.fromisoformat(DAY["start"]))
    stored = await api.storage.intervals("demo", d0, d0 + 86_400 * 10**9, device="grid-main")
    assert sorted(r.values["energy_import_kwh"] for r in stored) == [30.0, 100.0]

    # Listed for viewers; audited with the manager's key id as actor.
    r = await api.get(URL)
    assert r.status_code == 200
    assert [c["id"] for c in r.json()["items"]] == ["COR-1"]
    r = await api.get("/api/v1/audit", role="auditor")
    assert r.status_code == 200
    adds = [e for e in r.json()["items"] if e["action"] == "correction.add"]
    assert len(adds) == 1
    assert adds[0]["object"] == "park/demo/correction/COR-1"
    assert adds[0]["details"]["amount"] == 40.0
    assert adds[0]["details"]["reason"].startswith("meter replaced")
    manager = api.ledgers.authenticate(api.keys["manager"])
    assert manager is not None and adds[0]["actor"] == manager.id

    # Revoke: back to the stored data, in both the chained day and the hourly answer.
    r = await api.client.delete(
        f"{URL}/COR-1", params={"reason": "wrong meter"}, headers=api.auth("manager")
    )
    assert r.status_code == 200, r.text[:300]
    assert r.json()["revoked_at"] is not None
    day = await balance(api, "1d")
    assert day["total"]["grid_import_kwh"] == pytest.approx(130.0)
    hours = await balance(api, "1h")
    assert hours["buckets"][10]["grid_import_kwh"] == pytest.approx(30.0)
    assert hours["buckets"][11]["grid_import_kwh"] == pytest.approx(0.0)
    r = await api.get("/api/v1/audit", role="auditor")
    revokes = [e for e in r.json()["items"] if e["action"] == "correction.revoke"]
    assert len(revokes) == 1 and revokes[0]["details"]["reason"] == "wrong meter"
    assert (await api.get(URL)).json()["items"] == []
    r = await api.get(URL, params={"include_revoked": "true"})
    assert [c["id"] for c in r.json()["items"]] == ["COR-1"]
    # revoking twice: 409; the id stays taken: 409
    r = await api.client.delete(f"{URL}/COR-1", headers=api.auth("manager"))
    assert r.status_code == 409
    r = await api.client.post(URL, json=correction(), headers=api.auth("manager"))
    assert r.status_code == 409


async def test_set_correction_replaces_the_window_total(api: Api) -> None:
    await write_day(api)
    await balance(api, "1d")  # chain the day first, so the correction must invalidate it
    body = correction(id="COR-S", kind="set", amount=10.0)
    r = await api.client.post(URL, json=body, headers=api.auth("admin"))
    assert r.status_code == 201, r.text[:300]
    # 10:00–12:00 set to 10 → 5 each hour; 00:00 keeps 100: day 100 + 5 + 5 = 110
    hours = await balance(api, "1h")
    assert hours["buckets"][10]["grid_import_kwh"] == pytest.approx(5.0)
    assert hours["buckets"][11]["grid_import_kwh"] == pytest.approx(5.0)
    day = await balance(api, "1d")
    assert day["total"]["grid_import_kwh"] == pytest.approx(110.0)


async def test_permissions_and_validation(api: Api) -> None:
    r = await api.client.post(URL, json=correction(), headers=api.auth("viewer"))
    assert r.status_code == 403
    r = await api.client.post(URL, json=correction(), headers=api.auth("auditor"))
    assert r.status_code == 403
    r = await api.client.post(URL, json=correction())
    assert r.status_code == 401
    bad = [
        correction(start="2026-06-01T10:30:00+08:00"),  # not an hour boundary (1-h park)
        correction(end="2026-06-01T11:15:00+08:00"),
        correction(end="2026-06-01T10:00:00+08:00"),  # start == end
        correction(start="2026-06-01T12:00:00+08:00", end="2026-06-01T10:00:00+08:00"),
        correction(device="nope"),
        correction(quantity="power_kw"),
        correction(kind="set", amount=-1.0),
        correction(kind="scale"),
        correction(reason=""),
        correction(start="2026-06-01T10:00:00"),  # no offset
    ]
    for body in bad:
        r = await api.client.post(URL, json=body, headers=api.auth("manager"))
        assert r.status_code == 422, (body, r.text[:200])
    r = await api.client.post(
        "/api/v1/parks/nope/corrections", json=correction(), headers=api.auth("manager")
    )
    assert r.status_code == 404
    r = await api.client.delete(f"{URL}/missing", headers=api.auth("manager"))
    assert r.status_code == 404
    r = await api.client.delete(f"{URL}/missing", headers=api.auth("viewer"))
    assert r.status_code == 403
    r = await api.get("/api/v1/audit", role="auditor")
    assert not [e for e in r.json()["items"] if e["action"].startswith("correction.")]


async def test_correction_stored_by_another_process_is_picked_up(api: Api) -> None:
    await write_day(api)
    day = await balance(api, "1d")
    assert day["total"]["grid_import_kwh"] == pytest.approx(130.0)
    # Written straight to the store (as the CLI or another API process would): not seen
    # until the cache's correction snapshot expires, then the chained day is recomputed.
    api.ledgers.add_correction("demo", correction(id="COR-X", amount=-30.0), "ops")
    api.clock[0] += 3600 * 10**9
    day = await balance(api, "1d")
    # −30 over 10:00–12:00 = −15 per hour: 10:00 → 15, 11:00 → max(0, −15) = 0; day 115
    assert day["total"]["grid_import_kwh"] == pytest.approx(115.0)


@pytest.mark.parametrize(
    "over",
    [
        # found by tests/test_fuzz_api.py: valid RFC 3339 that overflows in UTC was a 500
        {"start": "0001-01-01T01:00:00+03:04", "end": "0001-01-01T02:00:00Z"},
        {"end": "9999-12-31T23:00:00-12:00"},
        {"amount": 1e308},  # two of them would sum to inf in every balance
    ],
)
async def test_implausible_corrections_are_422(api: Api, over: dict[str, Any]) -> None:
    r = await api.client.post(URL, json=correction(**over), headers=api.auth("admin"))
    assert r.status_code == 422, r.text
    assert (await api.get(URL)).json()["items"] == []
