"""Shared helpers for the API tests: a small registry, an app on real influxd + SQL, keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from app.accounting.buckets import to_ns
from app.config import Settings
from app.http.services import Services
from app.intervals.models import IntervalEnergy
from app.ledgers import ApiRole, LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.registry import parse_registry
from app.registry.models import Park, Registry
from app.storage.influx import InfluxStorage

REGISTRY_YAML = """
parks:
  - id: demo
    name: 沈抚示范
    timezone: Asia/Shanghai
    grid_region: northeast
    factor_set: cn-2023
    interval_minutes: 60
    devices:
      - {id: grid-main, role: grid}
      - {id: pv-1, role: pv, max_kw: 2000}
      - {id: bldg-a, role: load, included_in: grid-main}
  - id: berlin
    timezone: Europe/Berlin
    grid_region: national
    interval_minutes: 15
    devices:
      - {id: grid-b, role: grid}
  - id: store
    timezone: Asia/Shanghai
    grid_region: northeast
    interval_minutes: 60
    devices:
      - {id: grid-s, role: grid}
      - {id: pv-s, role: pv}
      - {id: bess, role: storage, capacity_kwh: 200}
"""

HOUR_NS = 3_600_000_000_000


def registry() -> Registry:
    return parse_registry(REGISTRY_YAML)


def iv(park: Park, device: str, start: datetime, minutes: int, **values: float) -> IntervalEnergy:
    s = to_ns(start)
    role = park.device_map[device].role.value
    return IntervalEnergy(park.id, device, role, s, s + minutes * 60_000_000_000, dict(values))


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    storage: InfluxStorage
    ledgers: LedgerStore
    live: LiveState
    registry: Registry
    keys: dict[str, str]
    clock: list[int]

    @property
    def svc(self) -> Services:
        s: Services = self.app.state.services
        return s

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def get(self, url: str, role: str = "viewer", **kw: Any) -> httpx.Response:
        headers = {**self.auth(role), **kw.pop("headers", {})}
        return await self.client.get(url, headers=headers, **kw)


async def make_api(
    influx_url: str,
    database: str,
    ledger_url: str,
    tmp: Path,
    *,
    settings: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AsyncIterator[Api]:
    reg = registry()
    storage = InfluxStorage(influx_url, database=database)
    ledgers = LedgerStore(ledger_url)
    clock = [to_ns(now) if now is not None else to_ns(datetime.now().astimezone())]
    live = LiveState(reg, clock=lambda: clock[0], min_render_interval_s=0.0)
    app = create_app(
        Settings(data_dir=tmp, parks=tmp / "parks.yaml", **(settings or {})),
        registry=reg,
        storage=storage,
        ledgers=ledgers,
        live=live,
        refresh_today_in_background=False,
    )
    app.state.services.balance.clock = lambda: clock[0]
    app.state.services.balance.cache.clock = lambda: clock[0]
    keys = {}
    for role in ApiRole:
        keys[role.value] = ledgers.create_key(role, f"test {role.value}", "system").key
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        try:
            yield Api(app, client, storage, ledgers, live, reg, keys, clock)
        finally:
            await storage.close()
            ledgers.close()


def local(park: Park, *args: int) -> datetime:
    return datetime(*args, tzinfo=park.tz)  # type: ignore[misc]


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
