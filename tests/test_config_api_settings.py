"""The API's knobs come from `Settings` alone: LINGTAN_* variables reach the running app."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.ledgers import LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.storage.embedded import EmbeddedStorage
from tests.api_support import registry

RANGE = {"start": "2026-06-01T00:00:00+08:00", "end": "2026-06-04T00:00:00+08:00", "every": "1d"}


async def _get(settings: Settings, tmp: Path, path: str, **params: str) -> httpx.Response:
    reg = registry()
    storage = EmbeddedStorage(tmp / "store.sqlite")
    ledgers = LedgerStore(f"sqlite:///{tmp}/ledgers.db")
    try:
        app = create_app(
            settings,
            registry=reg,
            storage=storage,
            ledgers=ledgers,
            live=LiveState(reg),
            refresh_today_in_background=False,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, params=params)
    finally:
        await storage.close()
        ledgers.close()


async def test_environment_reaches_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env or lingtan.toml of the checkout
    monkeypatch.setenv("LINGTAN_DATA_DIR", str(tmp_path))
    park = registry().parks[0].id
    balance = f"/api/v1/parks/{park}/balance"

    closed = Settings()
    assert (await _get(closed, tmp_path, "/api/v1/parks")).status_code == 401

    monkeypatch.setenv("LINGTAN_ANONYMOUS_READ", "yes")
    monkeypatch.setenv("LINGTAN_MAX_BALANCE_SPAN", "P2D")
    opened = Settings()
    assert opened.anonymous_read is True
    assert opened.max_balance_span == timedelta(days=2)
    assert (await _get(opened, tmp_path, "/api/v1/parks")).status_code == 200
    r = await _get(opened, tmp_path, balance, **RANGE)
    assert r.status_code == 400 and "limit of 2 days" in r.json()["detail"], r.text
    # the same three days pass under the default span
    monkeypatch.delenv("LINGTAN_MAX_BALANCE_SPAN")
    assert (await _get(Settings(), tmp_path, balance, **RANGE)).status_code == 200
