"""Revoking certificates and offsets over HTTP on the embedded store: roles, 404/409/422,
the audit entry and chain, and `/balance` on the next request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.accounting.buckets import to_ns
from app.config import Settings
from app.ledgers import ApiRole, LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.storage.base import WriteBatch
from app.storage.embedded import EmbeddedStorage
from tests.api_support import iv, registry

# cn-2023, northeast: EF_residual = 0.6096 kgCO2/kWh (the market factor without certificates)
EF_RES = 0.6096
NOW = datetime.fromisoformat("2026-07-01T00:00:00+08:00")
TWO_DAYS = {"start": "2026-06-01T00:00:00+08:00", "end": "2026-06-03T00:00:00+08:00"}

CERT: dict[str, Any] = {
    "id": "GEC-7",
    "kind": "gec",
    "mwh": 0.11,
    # the second day only: the revocation must move day 2 and leave day 1 as it was
    "valid_from": "2026-06-02T00:00:00+08:00",
    "valid_to": "2026-06-03T00:00:00+08:00",
    "source": "test",
}
OFFSET: dict[str, Any] = {
    "id": "CCER-7",
    "kind": "ccer",
    "tco2": 0.5,
    "date": "2026-06-02",
    "source": "t",
}
ENTRIES: dict[str, dict[str, Any]] = {"certificates": CERT, "offsets": OFFSET}


@dataclass
class App:
    client: httpx.AsyncClient
    ledgers: LedgerStore
    storage: EmbeddedStorage
    keys: dict[str, str]
    key_ids: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def add(self, kind: str, park: str = "demo", **over: Any) -> None:
        r = await self.client.post(
            f"/api/v1/parks/{park}/{kind}",
            json={**ENTRIES[kind], **over},
            headers=self.auth("manager"),
        )
        assert r.status_code == 201, r.text[:300]

    async def revoke(
        self, kind: str, entry_id: str, body: Any, role: str = "admin", park: str = "demo"
    ) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/parks/{park}/{kind}/{entry_id}/revoke",
            json=body,
            headers=self.auth(role) if role else {},
        )


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    reg = registry()
    ledgers = LedgerStore(f"sqlite:///{tmp_path}/ledgers.db")
    storage = EmbeddedStorage(tmp_path / "store.sqlite")
    fastapi_app = create_app(
        Settings(data_dir=tmp_path, max_balance_span=timedelta(days=400), max_buckets=10_000),
        registry=reg,
        storage=storage,
        ledgers=ledgers,
        live=LiveState(reg),
        refresh_today_in_background=False,
    )
    services = fastapi_app.state.services
    services.balance.clock = services.balance.cache.clock = lambda: to_ns(NOW)
    created = {role.value: ledgers.create_key(role, f"test {role.value}") for role in ApiRole}
    transport = httpx.ASGITransport(app=fastapi_app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield App(
                client,
                ledgers,
                storage,
                {r: c.key for r, c in created.items()},
                {r: c.id for r, c in created.items()},
            )
    finally:
        await storage.close()
        ledgers.close()


@pytest.mark.parametrize("kind", ["certificates", "offsets"])
async def test_only_admin_revokes_and_gets_the_revoked_record(app: App, kind: str) -> None:
    await app.add(kind)
    entry_id = ENTRIES[kind]["id"]
    r = await app.revoke(kind, entry_id, {"reason": "x"}, role="")
    assert r.status_code == 401
    for role in ("viewer", "auditor", "manager"):
        r = await app.revoke(kind, entry_id, {"reason": "x"}, role=role)
        assert r.status_code == 403, (role, r.text)
    r = await app.revoke(kind, entry_id, {"reason": "issued twice by the registry"})
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["id"] == entry_id and rec["park"] == "demo"
    assert rec["revoked_by"] == app.key_ids["admin"]
    assert rec["revoke_reason"] == "issued twice by the registry"
    assert rec["revoked_at"] is not None
    # gone from the default list, kept with ?include_revoked=true
    listed = await app.client.get(f"/api/v1/parks/demo/{kind}", headers=app.auth("viewer"))
    assert listed.json()["items"] == []
    listed = await app.client.get(
        f"/api/v1/parks/demo/{kind}",
        params={"include_revoked": "true"},
        headers=app.auth("viewer"),
    )
    assert [i["id"] for i in listed.json()["items"]] == [entry_id]
    # a second revocation is a conflict and changes nothing
    again = await app.revoke(kind, entry_id, {"reason": "again"})
    assert again.status_code == 409 and "already revoked" in again.json()["detail"]
    listed = await app.client.get(
        f"/api/v1/parks/demo/{kind}",
        params={"include_revoked": "true"},
        headers=app.auth("viewer"),
    )
    assert listed.json()["items"][0]["revoke_reason"] == "issued twice by the registry"


@pytest.mark.parametrize("kind", ["certificates", "offsets"])
async def test_unknown_other_park_and_bad_bodies(app: App, kind: str) -> None:
    await app.add(kind, park="berlin")
    entry_id = ENTRIES[kind]["id"]
    r = await app.revoke(kind, "NOPE-1", {"reason": "x"})
    assert r.status_code == 404 and "NOPE-1" in r.json()["detail"]
    # the id exists, but in another park: as unknown as any other
    r = await app.revoke(kind, entry_id, {"reason": "x"}, park="demo")
    assert r.status_code == 404
    r = await app.revoke(kind, entry_id, {"reason": "x"}, park="nowhere")
    assert r.status_code == 404 and "unknown park" in r.json()["detail"]
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {"why": "x"}):
        r = await app.revoke(kind, entry_id, body, park="berlin")
        assert r.status_code == 422, (body, r.text)
    # none of the refused requests revoked anything
    listed = await app.client.get(f"/api/v1/parks/berlin/{kind}", headers=app.auth("viewer"))
    assert [i["id"] for i in listed.json()["items"]] == [entry_id]


async def test_revocations_are_audited_and_the_chain_verifies(app: App) -> None:
    await app.add("certificates")
    await app.add("offsets")
    assert (await app.revoke("certificates", "GEC-7", {"reason": "double count"})).is_success
    assert (await app.revoke("offsets", "CCER-7", {"reason": "project withdrawn"})).is_success
    r = await app.client.get(
        "/api/v1/audit", params={"verify": "true"}, headers=app.auth("auditor")
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["problems"] == []
    revokes = [e for e in doc["items"] if e["action"].endswith(".revoke")]
    assert [(e["action"], e["object"], e["actor"]) for e in revokes] == [
        ("certificate.revoke", "park/demo/certificate/GEC-7", app.key_ids["admin"]),
        ("offset.revoke", "park/demo/offset/CCER-7", app.key_ids["admin"]),
    ]
    assert [e["details"]["reason"] for e in revokes] == ["double count", "project withdrawn"]
    assert doc["head"]["seq"] == doc["items"][-1]["seq"] == revokes[-1]["seq"]


async def write_two_days(app: App) -> None:
    """2026-06-01 and 06-02 (Asia/Shanghai, 1-h intervals), the same each day: grid imports
    100 kWh at 00:00 and 20 at 12:00 (exporting 50), pv makes 200 at 12:00."""
    park = registry().park("demo")
    assert park is not None
    rows = []
    for day in ("2026-06-01", "2026-06-02"):
        d0 = datetime.fromisoformat(f"{day}T00:00:00+08:00")
        d12 = d0 + timedelta(hours=12)
        rows += [
            iv(park, "grid-main", d0, 60, energy_import_kwh=100.0, energy_export_kwh=0.0),
            iv(park, "pv-1", d0, 60, energy_kwh=0.0),
            iv(park, "grid-main", d12, 60, energy_import_kwh=20.0, energy_export_kwh=50.0),
            iv(park, "pv-1", d12, 60, energy_kwh=200.0),
        ]
    await app.storage.write(WriteBatch(intervals=rows))


async def days(app: App) -> list[dict[str, Any]]:
    r = await app.client.get(
        "/api/v1/parks/demo/balance",
        params={**TWO_DAYS, "every": "1d"},
        headers=app.auth("viewer"),
    )
    assert r.status_code == 200, r.text[:300]
    buckets: list[dict[str, Any]] = r.json()["buckets"]
    assert len(buckets) == 2
    return buckets


async def test_a_revocation_changes_the_balance_on_the_next_request(app: App) -> None:
    await write_two_days(app)
    await app.add("certificates")
    await app.add("offsets")
    day1, day2 = await days(app)
    # day 2: the 110 kWh certificate covers 100 of 00:00 and 10 of 12:00;
    # market emissions (120 − 110) × 0.6096 = 6.096 kg; the 0.5 t offset counts that day
    assert day2["certificates_applied_kwh"] == pytest.approx(110.0)
    assert day2["scope2_market_kg"] == pytest.approx(10 * EF_RES)
    assert day2["offsets_kg"] == pytest.approx(500.0)
    # day 1: nothing applies (the certificate starts at day 2's midnight)
    assert day1["certificates_applied_kwh"] == pytest.approx(0.0)
    assert day1["scope2_market_kg"] == pytest.approx(120 * EF_RES)

    assert (await app.revoke("certificates", "GEC-7", {"reason": "double count"})).is_success
    after1, after2 = await days(app)
    assert after2["certificates_applied_kwh"] == pytest.approx(0.0)
    assert after2["scope2_market_kg"] == pytest.approx(120 * EF_RES)
    assert after2["green_market_kwh"] == pytest.approx(after2["green_physical_kwh"])
    assert after2["offsets_kg"] == pytest.approx(500.0)  # the offset still applies
    assert after1 == day1  # before the certificate's valid_from nothing moved

    assert (await app.revoke("offsets", "CCER-7", {"reason": "withdrawn"})).is_success
    _, last2 = await days(app)
    assert last2["offsets_kg"] == pytest.approx(0.0)
    assert last2["net_kg"] == pytest.approx(120 * EF_RES)
