"""API-key management over HTTP: create (plaintext once), list (no secrets), revoke, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.ledgers import ApiRole
from tests.api_support import Api, make_api
from tests.fixtures.influx import InfluxServer


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in make_api(fresh_influx_db.url, fresh_influx_db.database, sqlite_url, tmp_path):
        yield a


def key_id_of(api: Api, role: str) -> str:
    # plaintext keys are lt_<key id>_<secret>
    return api.keys[role].split("_")[1]


async def test_create_use_list_revoke(api: Api) -> None:
    admin_id = key_id_of(api, "admin")
    r = await api.client.post(
        "/api/v1/keys", json={"role": "manager", "label": "ops laptop"}, headers=api.auth("admin")
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    created = r.json()
    assert created["role"] == "manager" and created["label"] == "ops laptop"
    assert created["created_by"] == admin_id and created["revoked_at"] is None
    key = created["key"]
    assert key.startswith(f"lt_{created['id']}_")

    # the new key works, with its role
    assert api.ledgers.verify_key(key) is ApiRole.MANAGER
    r = await api.client.get("/api/v1/parks", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200

    # listed without any secret
    r = await api.get("/api/v1/keys", role="admin")
    assert r.status_code == 200
    items = r.json()["items"]
    assert created["id"] in [i["id"] for i in items]
    assert len(items) == 5  # 4 test keys + the new one
    assert all("key" not in i and "key_hash" not in i for i in items)
    assert key not in r.text

    # revoke: 200 with the record; stops working at once (auth cache dropped)
    r = await api.client.delete(f"/api/v1/keys/{created['id']}", headers=api.auth("admin"))
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["id"] == created["id"] and rec["revoked_by"] == admin_id
    assert rec["revoked_at"] is not None and "key" not in rec
    r = await api.client.get("/api/v1/parks", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401

    # revoked keys are listed only on request
    active = (await api.get("/api/v1/keys", role="admin")).json()["items"]
    assert created["id"] not in [i["id"] for i in active]
    every = (
        await api.get("/api/v1/keys", role="admin", params={"include_revoked": "true"})
    ).json()["items"]
    revoked = [i for i in every if i["id"] == created["id"]]
    assert len(revoked) == 1 and revoked[0]["revoked_by"] == admin_id

    # revoking again: 409; unknown id: 404
    r = await api.client.delete(f"/api/v1/keys/{created['id']}", headers=api.auth("admin"))
    assert r.status_code == 409
    r = await api.client.delete("/api/v1/keys/k000000000000", headers=api.auth("admin"))
    assert r.status_code == 404


async def test_audited_with_acting_key(api: Api) -> None:
    admin_id = key_id_of(api, "admin")
    r = await api.client.post(
        "/api/v1/keys", json={"role": "viewer", "label": "kiosk"}, headers=api.auth("admin")
    )
    new_id = r.json()["id"]
    await api.client.delete(f"/api/v1/keys/{new_id}", headers=api.auth("admin"))
    entries = api.ledgers.list_audit()
    mine = [(e.actor, e.action, e.object) for e in entries if e.object == f"key/{new_id}"]
    assert mine == [
        (admin_id, "key.create", f"key/{new_id}"),
        (admin_id, "key.revoke", f"key/{new_id}"),
    ]
    assert api.ledgers.verify_audit() == []


@pytest.mark.parametrize("role", ["viewer", "auditor", "manager"])
async def test_non_admin_is_403(api: Api, role: str) -> None:
    target = key_id_of(api, "viewer")
    r = await api.client.post(
        "/api/v1/keys", json={"role": "admin", "label": "x"}, headers=api.auth(role)
    )
    assert r.status_code == 403
    assert (await api.get("/api/v1/keys", role=role)).status_code == 403
    r = await api.client.delete(f"/api/v1/keys/{target}", headers=api.auth(role))
    assert r.status_code == 403
    # nothing changed: the viewer key still works
    assert api.ledgers.verify_key(api.keys["viewer"]) is ApiRole.VIEWER


async def test_no_key_is_401(api: Api) -> None:
    r = await api.client.post("/api/v1/keys", json={"role": "viewer"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert (await api.client.get("/api/v1/keys")).status_code == 401


async def test_last_active_admin_cannot_be_revoked(api: Api) -> None:
    admin_id = key_id_of(api, "admin")
    r = await api.client.delete(f"/api/v1/keys/{admin_id}", headers=api.auth("admin"))
    assert r.status_code == 409
    assert "last active admin" in r.json()["detail"]
    assert api.ledgers.verify_key(api.keys["admin"]) is ApiRole.ADMIN

    # with a second admin, the first may be revoked (even by itself)
    r = await api.client.post(
        "/api/v1/keys", json={"role": "admin", "label": "second"}, headers=api.auth("admin")
    )
    second = r.json()
    r = await api.client.delete(f"/api/v1/keys/{admin_id}", headers=api.auth("admin"))
    assert r.status_code == 200
    assert (await api.get("/api/v1/keys", role="admin")).status_code == 401
    r = await api.client.delete(
        f"/api/v1/keys/{second['id']}", headers={"Authorization": f"Bearer {second['key']}"}
    )
    assert r.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"role": "root", "label": "x"},
        {"label": "no role"},
        {"role": "viewer", "label": "x" * 201},
        {"role": "viewer", "lable": "typo"},
    ],
)
async def test_bad_body_is_422(api: Api, body: dict[str, str]) -> None:
    r = await api.client.post("/api/v1/keys", json=body, headers=api.auth("admin"))
    assert r.status_code == 422, r.text
    assert len(api.ledgers.list_keys()) == 4
