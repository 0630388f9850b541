"""Concurrent `/balance` requests give what a cache-less recomputation gives: 16 clients with
random windows and buckets against a cold and a warm `lingtan api` process on influxd, and
again under a CPU hog. Certificates are never applied twice."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.accounting import Certificate, Offset, get_factor_set
from app.intervals.models import IntervalEnergy
from app.registry import parse_registry
from app.storage.base import WriteBatch
from app.storage.influx import InfluxStorage
from tests.balance_reference import mismatches, recompute, stored_rows
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import free_port
from tests.ingest_support import wait_for
from tests.process_support import serving, start

ADMIN_KEY = "concurrency-admin-key-0123456789abc"
TZ = ZoneInfo("Asia/Shanghai")
PARKS = """
parks:
  - id: c1
    timezone: Asia/Shanghai
    grid_region: northeast
    devices:
      - {id: grid-main, role: grid}
      - {id: pv-1, role: pv}
      - {id: bess-1, role: storage, capacity_kwh: 400}
      - {id: bldg-a, role: load, included_in: grid-main}
"""
FIRST_DAY = datetime(2026, 10, 28, tzinfo=TZ)
DAYS = 16
Q_NS = 900 * 10**9
CERTIFICATES = [
    {"id": "C-1", "kind": "gec", "mwh": 3, "from": "2026-10-28", "to": "2026-11-06"},
    {"id": "C-2", "kind": "trade", "mwh": 2, "from": "2026-11-01", "to": "2026-11-30"},
    {"id": "C-3", "kind": "gec", "mwh": 1.5, "from": "2026-11-04", "to": "2026-11-07"},
]
CLIENTS = 16
QUERIES_PER_CLIENT = 2


def day_rows(rng: random.Random) -> list[IntervalEnergy]:
    """Interval rows of the whole period: a sunny park whose battery charges at noon and
    discharges at night, with state of charge reported (so stored solar is carried over)."""
    rows: list[IntervalEnergy] = []
    soc = 20.0
    for q in range(DAYS * 96):
        t0 = int(FIRST_DAY.timestamp()) * 10**9 + q * Q_NS
        hour = (q % 96) / 4
        sun = max(0.0, 1 - abs(hour - 12.5) / 6) * rng.uniform(60, 120)
        charge = min(sun * 0.6, (95 - soc) * 4) if 9 <= hour < 15 else 0.0
        discharge = min(rng.uniform(10, 30), (soc - 10) * 4) if hour >= 18 or hour < 5 else 0.0
        discharge = max(0.0, discharge)
        soc += (charge * 0.95 - discharge) / 4
        load = rng.uniform(40, 90)
        imp = max(0.0, load + charge - sun - discharge)
        exp = max(0.0, sun + discharge - load - charge)
        t1 = t0 + Q_NS
        rows += [
            IntervalEnergy(
                "c1", "grid-main", "grid", t0, t1,
                {"energy_import_kwh": imp, "energy_export_kwh": exp},
            ),
            IntervalEnergy("c1", "pv-1", "pv", t0, t1, {"energy_kwh": sun}),
            IntervalEnergy(
                "c1", "bess-1", "storage", t0, t1,
                {"energy_charge_kwh": charge, "energy_discharge_kwh": discharge, "soc_pct": soc},
            ),
            IntervalEnergy("c1", "bldg-a", "load", t0, t1, {"energy_import_kwh": load * 0.4}),
        ]  # fmt: skip
    return rows


def random_query(rng: random.Random) -> dict[str, str]:
    every = rng.choice(["15m", "1h", "1d", "1d", "1mo", "1mo"])
    span_days = {"15m": 3, "1h": 10, "1d": DAYS + 4, "1mo": DAYS + 10}[every]
    start_q = rng.randrange(0, (DAYS - 1) * 96)
    if every in ("1d", "1mo") and rng.random() < 0.6:
        start_q -= start_q % 96  # mostly whole days, sometimes a ragged start
    start = FIRST_DAY + timedelta(minutes=15 * start_q)
    end = start + timedelta(minutes=15 * rng.randrange(1, span_days * 96))
    return {"start": start.isoformat(), "end": end.isoformat(), "every": every}


@pytest.fixture
def cpu_hog() -> Iterator[None]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
            h.wait()


async def _round(
    base: str, seed: int, storage: InfluxStorage, ledger: dict[str, Any]
) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """16 clients at once, each asking a few random windows; every answer kept."""
    answers: list[tuple[dict[str, str], dict[str, Any]]] = []
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def client(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as api:
            for _ in range(QUERIES_PER_CLIENT):
                params = random_query(rng)
                r = await api.get("/api/v1/parks/c1/balance", params=params)
                assert r.status_code == 200, r.text
                answers.append((params, r.json()))

    await asyncio.gather(*(client(k) for k in range(CLIENTS)))
    return answers


async def _check(
    answers: list[tuple[dict[str, str], dict[str, Any]]],
    storage: InfluxStorage,
    ledger: dict[str, Any],
) -> None:
    park, fs = ledger["park"], ledger["fs"]
    rows = await stored_rows(storage, park, FIRST_DAY + timedelta(days=100))
    for params, got in answers:
        want = recompute(
            rows,
            park,
            ledger["certificates"],
            ledger["offsets"],
            fs,
            datetime.fromisoformat(params["start"]),
            datetime.fromisoformat(params["end"]),
            params["every"],  # type: ignore[arg-type]
        )
        problems = mismatches(got, want)
        assert not problems, f"{params}: {problems[:5]}"
        used: dict[str, float] = defaultdict(float)
        for use in got["certificate_trail"]:
            used[use["certificate_id"]] += use["kwh"]
        for c in ledger["certificates"]:
            assert used[c.id] <= c.mwh * 1000 + 1e-6, f"{c.id} applied beyond its volume"


async def test_concurrent_queries_equal_a_fresh_recomputation(
    fresh_influx_db: InfluxServer,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
    request: pytest.FixtureRequest,
) -> None:
    influx = fresh_influx_db
    (tmp_path / "parks.yaml").write_text(PARKS)
    park = parse_registry(PARKS).park("c1")
    assert park is not None
    storage = InfluxStorage(influx.url, influx.database)
    await storage.ensure_database()
    await storage.write(WriteBatch(intervals=day_rows(random.Random(7))))
    env = {
        "LINGTAN_INFLUX_URL": influx.url,
        "LINGTAN_INFLUX_DB": influx.database,
        "LINGTAN_PARKS": str(tmp_path / "parks.yaml"),
        "LINGTAN_DB_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "LINGTAN_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "LINGTAN_DATA_DIR": str(tmp_path / "api"),
    }

    async def start_api(name: str) -> str:
        port = free_port()
        processes.append(start("api", {**env, "LINGTAN_API_PORT": str(port)}, tmp_path / name))
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as api:
            await wait_for(lambda: serving(api), what=f"{name} serving")
        return base

    base = await start_api("api-1.log")
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as api:
        for c in CERTIFICATES:
            r = await api.post(
                "/api/v1/parks/c1/certificates",
                json={
                    "id": c["id"],
                    "kind": c["kind"],
                    "mwh": c["mwh"],
                    "valid_from": f"{c['from']}T00:00:00+08:00",
                    "valid_to": f"{c['to']}T00:00:00+08:00",
                    "source": "test",
                },
            )
            assert r.status_code == 201, r.text
        r = await api.post(
            "/api/v1/parks/c1/offsets",
            json={"id": "O-1", "kind": "ccer", "tco2": 3.5, "date": "2026-11-03", "source": "t"},
        )
        assert r.status_code == 201, r.text
    ledger = {
        "park": park,
        "fs": get_factor_set(park.factor_set),
        "certificates": [
            Certificate(
                str(c["id"]),
                "c1",
                c["kind"],  # type: ignore[arg-type]
                float(c["mwh"]),
                datetime.fromisoformat(f"{c['from']}T00:00:00+08:00"),
                datetime.fromisoformat(f"{c['to']}T00:00:00+08:00"),
            )
            for c in CERTIFICATES
        ],
        "offsets": [Offset("O-1", "c1", "ccer", 3.5, datetime(2026, 11, 3).date())],
    }
    try:
        # cold: certificates were posted, so every chained day is recomputed by the first
        # requests, all arriving at once
        await _check(await _round(base, 1, storage, ledger), storage, ledger)
        # warm: the same process, other windows
        await _check(await _round(base, 2, storage, ledger), storage, ledger)
        # a second, cold process while two CPU hogs compete for the machine's cores
        request.getfixturevalue("cpu_hog")
        base2 = await start_api("api-2.log")
        await _check(await _round(base2, 3, storage, ledger), storage, ledger)
    finally:
        await storage.close()
