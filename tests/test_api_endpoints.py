"""Parks, readings (JSON/CSV), dead letters, ledgers, audit, auth, health and metrics."""

from __future__ import annotations

import base64
import contextlib
import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from app.accounting.buckets import to_ns
from app.storage.base import WriteBatch
from app.telemetry.models import DeadLetter, Reading, RejectReason
from tests.api_support import Api, make_api
from tests.fixtures.influx import InfluxServer

T0 = datetime.fromisoformat("2026-06-01T08:00:00+08:00")
T0_NS = to_ns(T0)
MIN = 60_000_000_000
CERT = {
    "id": "GEC-2026-0001",
    "kind": "gec",
    "mwh": 120,
    "valid_from": "2026-01-01T00:00:00+08:00",
    "valid_to": "2026-04-01T00:00:00+08:00",
    "source": "绿证核发交易系统",
}
OFFSET = {"id": "CCER-1", "kind": "ccer", "tco2": 12.5, "date": "2026-03-01", "source": "x"}


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in make_api(fresh_influx_db.url, fresh_influx_db.database, sqlite_url, tmp_path):
        yield a


async def test_parks(api: Api) -> None:
    r = await api.get("/api/v1/parks")
    assert r.status_code == 200
    parks = {p["id"]: p for p in r.json()["items"]}
    assert set(parks) == {"demo", "berlin", "store"}
    assert parks["demo"]["timezone"] == "Asia/Shanghai"
    assert [d["id"] for d in parks["demo"]["devices"]] == ["grid-main", "pv-1", "bldg-a"]
    assert parks["demo"]["devices"][2]["included_in"] == "grid-main"
    assert (await api.get("/api/v1/parks/nope")).status_code == 404


async def write_readings(api: Api) -> None:
    # grid-main every 30 min for 3 h (6 readings), pv-1 once; spans several query windows
    rows = [
        Reading("demo", "grid-main", T0_NS + k * 30 * MIN, {"energy_import_kwh": 1000.0 + k})
        for k in range(6)
    ]
    rows.append(
        Reading("demo", "pv-1", T0_NS + 5 * MIN, {"energy_kwh": 7.5, "inverter_temp": 41.0}, True)
    )
    await api.storage.write(WriteBatch(readings=rows))


RANGE = {"start": "2026-06-01T08:00:00+08:00", "end": "2026-06-01T11:00:00+08:00"}


async def test_readings_json(api: Api) -> None:
    await write_readings(api)
    r = await api.get("/api/v1/parks/demo/readings", params=RANGE)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    items = r.json()["items"]
    assert len(items) == 7
    assert [i["time"] for i in items[:2]] == [
        "2026-06-01T08:00:00+08:00",
        "2026-06-01T08:05:00+08:00",
    ]
    pv = items[1]
    assert pv["device"] == "pv-1" and pv["reset"] is True
    assert pv["values"] == {"energy_kwh": 7.5, "inverter_temp": 41.0}
    one = await api.get("/api/v1/parks/demo/readings", params={**RANGE, "device": "grid-main"})
    assert [i["values"]["energy_import_kwh"] for i in one.json()["items"]] == [
        1000.0,
        1001.0,
        1002.0,
        1003.0,
        1004.0,
        1005.0,
    ]
    # half-open: end at 10:30 excludes the 10:30 reading
    half = await api.get(
        "/api/v1/parks/demo/readings",
        params={"start": RANGE["start"], "end": "2026-06-01T10:30:00+08:00", "device": "grid-main"},
    )
    assert len(half.json()["items"]) == 5


async def test_readings_csv(api: Api) -> None:
    await write_readings(api)
    r = await api.get("/api/v1/parks/demo/readings", params=RANGE, headers={"Accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 7
    assert rows[0]["time"] == "2026-06-01T08:00:00+08:00" and rows[0]["device"] == "grid-main"
    assert float(rows[0]["energy_import_kwh"]) == 1000.0 and rows[0]["energy_kwh"] == ""
    assert rows[1]["reset"] == "true" and float(rows[1]["energy_kwh"]) == 7.5
    assert rows[1]["extra"] == '{"inverter_temp": 41.0}'


@pytest.mark.parametrize(
    ("url", "params", "status"),
    [
        ("/api/v1/parks/nope/readings", RANGE, 404),
        ("/api/v1/parks/demo/readings", {**RANGE, "device": "ghost"}, 404),
        ("/api/v1/parks/demo/readings", {**RANGE, "start": "2026-06-01T08:00:00"}, 422),
        ("/api/v1/parks/demo/readings", {"start": RANGE["end"], "end": RANGE["start"]}, 422),
        (
            "/api/v1/parks/demo/readings",
            {"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
            400,
        ),
        ("/api/v1/deadletters", {"start": "not a time"}, 422),
    ],
)
async def test_readings_4xx(api: Api, url: str, params: dict[str, str], status: int) -> None:
    r = await api.get(url, params=params)
    assert r.status_code == status, r.text


async def test_deadletters_raw_for_auditors_only(api: Api) -> None:
    raw = b'{"ts": "2026-06-01T08:00:00+08:00", "power_kw": NaN, "note": "\xe6\xb5\x8b"}'
    dl = DeadLetter(
        T0_NS,
        "lingtan/v1/demo/grid-main/telemetry",
        "demo",
        "grid-main",
        RejectReason.NON_FINITE,
        "power_kw is NaN",
        raw,
    )
    other = DeadLetter(
        T0_NS + MIN,
        "lingtan/v1/berlin/x/telemetry",
        "berlin",
        "x",
        RejectReason.UNKNOWN_DEVICE,
        "unknown device x",
        b"{}",
    )
    await api.storage.write(WriteBatch(deadletters=[dl, other]))
    r = await api.get("/api/v1/deadletters", params={"park": "demo"})
    assert r.status_code == 200
    (item,) = r.json()["items"]
    assert item["reason"] == "non_finite" and item["topic"] == dl.topic
    assert item["received"] == "2026-06-01T00:00:00+00:00"
    assert "raw_base64" not in item and r.json()["raw_included"] is False
    r = await api.get("/api/v1/deadletters", "auditor", params={"park": "demo"})
    (item,) = r.json()["items"]
    assert base64.b64decode(item["raw_base64"]) == raw
    assert item["raw_preview"] == raw.decode("utf-8")
    r = await api.get(
        "/api/v1/deadletters",
        params={"start": "2026-06-01T00:00:30Z", "end": "2026-06-01T01:00:00Z"},
    )
    assert [i["park"] for i in r.json()["items"]] == ["berlin"]


class TestLedgers:
    """On SQLite and PostgreSQL (`sql_url`)."""

    @pytest.fixture
    async def api(
        self, fresh_influx_db: InfluxServer, sql_url: str, tmp_path: Path
    ) -> AsyncIterator[Api]:
        async for a in make_api(fresh_influx_db.url, fresh_influx_db.database, sql_url, tmp_path):
            yield a

    async def test_post_and_list_audited(self, api: Api) -> None:
        url = "/api/v1/parks/demo/certificates"
        r = await api.client.post(url, json=CERT, headers=api.auth("manager"))
        assert r.status_code == 201, r.text
        rec = r.json()
        assert rec["id"] == CERT["id"] and rec["park"] == "demo" and rec["mwh"] == 120
        assert rec["valid_from"] == "2025-12-31T16:00:00Z"
        manager_id = api.keys["manager"].split("_")[1]
        assert rec["created_by"] == manager_id
        r = await api.get(url)
        assert [c["id"] for c in r.json()["items"]] == [CERT["id"]]
        assert (await api.get("/api/v1/parks/berlin/certificates")).json() == {"items": []}
        # same id again, even in another park → 409
        r = await api.client.post(
            "/api/v1/parks/berlin/certificates", json=CERT, headers=api.auth("admin")
        )
        assert r.status_code == 409 and "already registered" in r.text

        r = await api.client.post(
            "/api/v1/parks/demo/offsets", json=OFFSET, headers=api.auth("admin")
        )
        assert r.status_code == 201, r.text
        admin_id = api.keys["admin"].split("_")[1]
        items = (await api.get("/api/v1/parks/demo/offsets")).json()["items"]
        assert [(o["id"], o["tco2"], o["date"]) for o in items] == [("CCER-1", 12.5, "2026-03-01")]

        r = await api.get("/api/v1/audit", "auditor", params={"verify": "true"})
        assert r.status_code == 200
        doc = r.json()
        actions = [(e["action"], e["actor"]) for e in doc["items"]]
        assert ("certificate.add", manager_id) in actions
        assert ("offset.add", admin_id) in actions
        assert doc["problems"] == []
        assert doc["head"]["seq"] == doc["items"][-1]["seq"]
        assert doc["head"]["hash"] == doc["items"][-1]["hash"]

    @pytest.mark.parametrize(
        "body",
        [
            {**CERT, "valid_from": "2026-01-01T00:00:00"},  # naive
            {**CERT, "mwh": -1},
            {**CERT, "valid_to": "2025-01-01T00:00:00+08:00"},  # before valid_from
            {**CERT, "kind": "rec"},
            {**CERT, "valid_form": "x"},  # typo'd field
        ],
    )
    async def test_bad_bodies_422(self, api: Api, body: dict[str, object]) -> None:
        r = await api.client.post(
            "/api/v1/parks/demo/certificates", json=body, headers=api.auth("manager")
        )
        assert r.status_code == 422, r.text


async def test_auth_rules(api: Api) -> None:
    url = "/api/v1/parks/demo/certificates"
    assert (await api.client.get("/api/v1/parks")).status_code == 401
    r = await api.client.get("/api/v1/parks", headers={"Authorization": "Bearer lt_nope_x"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = await api.client.get("/api/v1/parks", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    assert (await api.client.post(url, json=CERT)).status_code == 401
    r = await api.client.post(url, json=CERT, headers=api.auth("viewer"))
    assert r.status_code == 403 and "manager" in r.text
    r = await api.client.post(url, json=CERT, headers=api.auth("auditor"))
    assert r.status_code == 403
    assert (await api.client.post(url, json=CERT, headers=api.auth("manager"))).status_code == 201
    assert (await api.get("/api/v1/audit", "viewer")).status_code == 403
    assert (await api.get("/api/v1/audit", "auditor")).status_code == 200
    r = await api.client.post(
        "/api/v1/parks/nope/certificates", json={**CERT, "id": "X"}, headers=api.auth("manager")
    )
    assert r.status_code == 404


async def test_anonymous_read_when_enabled(
    fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path
) -> None:
    async for api in make_api(
        fresh_influx_db.url,
        fresh_influx_db.database,
        sqlite_url,
        tmp_path,
        settings={"anonymous_read": True},
    ):
        assert (await api.client.get("/api/v1/parks")).status_code == 200
        assert (await api.client.get("/api/v1/parks/demo/live")).status_code == 200
        assert (await api.client.get("/api/v1/audit")).status_code == 401
        r = await api.client.post("/api/v1/parks/demo/certificates", json=CERT)
        assert r.status_code == 401
        # a key that is sent must still be valid
        r = await api.client.get("/api/v1/parks", headers={"Authorization": "Bearer bad"})
        assert r.status_code == 401


async def test_bootstrap_admin_key_works(api: Api) -> None:
    api.ledgers.bootstrap_admin("a-very-long-bootstrap-secret")
    r = await api.client.post(
        "/api/v1/parks/demo/certificates",
        json=CERT,
        headers={"Authorization": "Bearer a-very-long-bootstrap-secret"},
    )
    assert r.status_code == 201 and r.json()["created_by"] == "bootstrap"


async def test_healthz_and_metrics(api: Api) -> None:
    r = await api.client.get("/healthz")
    assert r.json() == {"status": "ok", "storage": "ok"}
    await api.get("/api/v1/parks")
    await api.get("/api/v1/parks/nope/live")
    r = await api.client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert 'lingtan_api_requests_total{method="GET",route="/api/v1/parks",status="200"} 1.0' in text
    assert 'route="/api/v1/parks/{park}/live",status="404"' in text
    assert "lingtan_api_request_seconds_bucket" in text


async def test_storage_down_is_503(
    fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path
) -> None:
    from tests.fixtures.influx import free_port

    async for api in make_api(f"http://127.0.0.1:{free_port()}", "x", sqlite_url, tmp_path):
        r = await api.get("/api/v1/parks/demo/readings", params=RANGE)
        assert r.status_code == 503
        r = await api.get(
            "/api/v1/parks/demo/balance",
            params={"start": RANGE["start"], "end": RANGE["end"], "every": "1h"},
        )
        assert r.status_code == 503
        assert (await api.client.get("/healthz")).json()["storage"] == "unavailable"


async def test_run_api_end_to_end(fresh_influx_db: InfluxServer, tmp_path: Path) -> None:
    """`run_api` (what `lingtan api` runs): opens storage and ledgers, applies the bootstrap
    admin key, answers over real HTTP, and stops when cancelled."""
    import asyncio

    import httpx

    from app.config import Settings
    from lingtan.runtime import run_api
    from tests.api_support import REGISTRY_YAML
    from tests.fixtures.influx import free_port

    (tmp_path / "parks.yaml").write_text(REGISTRY_YAML)
    port = free_port()
    settings = Settings(
        influx_url=fresh_influx_db.url,
        influx_db=fresh_influx_db.database,
        parks=tmp_path / "parks.yaml",
        data_dir=tmp_path / "data",
        api_port=port,
        bootstrap_admin_key="bootstrap-key-for-tests-0123456789",  # type: ignore[arg-type]
    )
    task = asyncio.create_task(run_api(settings))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            for _ in range(200):
                try:
                    r = await c.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert r.json() == {"status": "ok", "storage": "ok"}
            admin = {"Authorization": "Bearer bootstrap-key-for-tests-0123456789"}
            r = await c.post("/api/v1/parks/demo/certificates", json=CERT, headers=admin)
            assert r.status_code == 201, r.text
            r = await c.get("/api/v1/parks/demo/live", headers=admin)
            assert r.status_code == 200 and r.json()["park"] == "demo"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    assert (tmp_path / "data" / "lingtan.db").exists()


@pytest.mark.parametrize(
    ("url", "params", "role"),
    [
        # found by tests/test_fuzz_api.py: each was a 5xx before
        ("/api/v1/deadletters", {"park": "a\x00b"}, "viewer"),  # influxd 400 → our 502
        ("/api/v1/deadletters", {"park": "a\rb"}, "viewer"),
        ("/api/v1/audit", {"after_seq": str(2**63)}, "auditor"),  # SQL integer overflow → 500
    ],
)
async def test_fuzz_found_inputs_are_422(
    api: Api, url: str, params: dict[str, str], role: str
) -> None:
    r = await api.get(url, role, params=params)
    assert r.status_code == 422, r.text


async def test_audit_after_the_largest_sequence_is_empty(api: Api) -> None:
    r = await api.get("/api/v1/audit", "auditor", params={"after_seq": str(2**63 - 1)})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == []


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        # found by tests/test_fuzz_api.py: the first was a 500 on POST; the others were stored
        # and made every later /balance and /evaluation of the park a 500
        ("certificates", {"valid_from": "0001-01-01T00:00:00+14:00"}),
        ("certificates", {"valid_to": "9999-12-31T23:59:59-12:00"}),
        ("certificates", {"mwh": 1e308}),
        ("offsets", {"date": "0001-01-01"}),
        ("offsets", {"date": "2100-01-01"}),
        ("offsets", {"tco2": 1e308}),
    ],
)
async def test_implausible_ledger_entries_are_422_and_reports_stay_up(
    api: Api, kind: str, change: dict[str, object]
) -> None:
    body = {**(CERT if kind == "certificates" else OFFSET), **change}
    url = f"/api/v1/parks/demo/{kind}"
    r = await api.client.post(url, json=body, headers=api.auth("admin"))
    assert r.status_code == 422, r.text
    assert (await api.get(url)).json() == {"items": []}
    r = await api.get("/api/v1/parks/demo/evaluation", params={"year": "2026"})
    assert r.status_code == 200, r.text


async def test_ledger_entries_at_the_range_edges_are_accepted(api: Api) -> None:
    cert = {**CERT, "valid_from": "2000-01-01T00:00:00Z", "valid_to": "2099-12-31T23:59:59Z"}
    r = await api.client.post(
        "/api/v1/parks/demo/certificates", json={**cert, "mwh": 1e9}, headers=api.auth("admin")
    )
    assert r.status_code == 201, r.text
    offset = {**OFFSET, "date": "2099-12-31", "tco2": 1e9}
    r = await api.client.post("/api/v1/parks/demo/offsets", json=offset, headers=api.auth("admin"))
    assert r.status_code == 201, r.text
