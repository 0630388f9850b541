"""Helpers shared by the ingest tests: a test park, settings, publishing and waiting."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from app.config import Settings
from collectors.mqtt import GmqttPublisher, MqttEndpoint

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: Local midnight in the park's zone: intervals start here.
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=SHANGHAI)
T0_S = int(T0.timestamp())
T0_NS = T0_S * 10**9
N_METERS = 40

_METERS = "\n".join(
    f"      - {{id: m{i}, role: load, included_in: grid-main}}" for i in range(N_METERS)
)
PARKS_YAML = f"""
parks:
  - id: p1
    name: Test park
    timezone: Asia/Shanghai
    grid_region: northeast
    devices:
      - {{id: grid-main, role: grid, max_kw: 5000}}
      - {{id: pv-1, role: pv, max_kw: 100}}
{_METERS}
"""


def write_parks(tmp: Path) -> Path:
    path = tmp / "parks.yaml"
    path.write_text(PARKS_YAML)
    return path


def make_settings(tmp: Path, mqtt_url: str, influx_url: str, db: str, **kw: object) -> Settings:
    tmp.mkdir(parents=True, exist_ok=True)
    options: dict[str, object] = {"metrics_port": 0, "batch_max_wait_ms": 20, **kw}
    return Settings(
        mqtt_url=mqtt_url,
        influx_url=influx_url,
        influx_db=db,
        parks=write_parks(tmp),
        data_dir=tmp / "data",
        **options,  # type: ignore[arg-type]
    )


def topic(device: str, park: str = "p1") -> str:
    return f"lingtan/v1/{park}/{device}/telemetry"


def meter_reading(minute: int, kwh_per_min: float = 1.0, base: float = 1000.0) -> dict[str, float]:
    """Minute `minute` of a meter whose counter rises `kwh_per_min` each minute from `base`."""
    return {"ts": T0_S + 60 * minute, "energy_import_kwh": base + kwh_per_min * minute}


async def publish_all(url: str, messages: list[tuple[str, object]]) -> None:
    pub = GmqttPublisher(MqttEndpoint.parse(url))
    await pub.connect()
    try:
        for t, body in messages:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            await pub.publish(t, payload, qos=1)
        await pub.drain()
    finally:
        await pub.close()


async def wait_for(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout_s: float = 30.0,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)
