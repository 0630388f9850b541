"""Interval energies across restarts, very late readings and a storage outage (real influxd)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from app.registry import parse_registry
from app.storage.influx import InfluxStorage
from app.storage.spool import DurableWriter
from collectors.pipeline import Collector
from tests.fixtures.influx import InfluxServer
from tests.ingest_support import N_METERS, PARKS_YAML, T0_NS, T0_S, topic, wait_for

REGISTRY = parse_registry(PARKS_YAML)
MIN = 60
DAY = 86_400
NOW_NS = T0_NS + 10 * DAY * 10**9  # "now" for the decoder: after every reading below


@asynccontextmanager
async def collector(influx: InfluxServer, spool: Path) -> AsyncIterator[Collector]:
    storage = InfluxStorage(influx.url, influx.database, timeout_s=2.0)
    writer = DurableWriter(storage, spool, retry_initial_s=0.1, retry_max_s=0.5)
    writer.start()
    c = Collector(REGISTRY, writer, storage, batch_max_wait_s=0.0, clock_ns=lambda: NOW_NS)
    c.start()
    try:
        yield c
    finally:
        await c.stop()
        await writer.close()
        await storage.close()


async def send(c: Collector, minute: float, kwh: float, device: str = "m0") -> None:
    body = {"ts": T0_S + int(minute * MIN), "energy_import_kwh": kwh}
    await c.handle(topic(device), json.dumps(body).encode())


def intervals(influx: InfluxServer, device: str = "m0") -> dict[int, tuple[float, bool]]:
    """{minutes after T0: (kWh, estimated)} of the stored interval energies."""
    rows = influx.points(f"SELECT * FROM interval_energy WHERE device='{device}'")
    return {
        (r["time"] - T0_NS) // (MIN * 10**9): (r["energy_import_kwh"], r["estimated"]) for r in rows
    }


async def test_late_reading_older_than_the_engines_window_is_recomputed_from_storage(
    fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    influx = fresh_influx_db
    async with collector(influx, tmp_path / "spool.sqlite") as c:
        await send(c, 0, 100.0)
        await send(c, 30, 130.0)
        # a 30-min segment is a gap (> 1.5 intervals): 30 kWh spread as 15 + 15, estimated
        got = intervals(influx)
        assert got[0] == (15.0, True) and got[15] == (15.0, True)
        await send(c, 3 * 24 * 60, 200.0)  # three days later: day 0 leaves the engine's window
        await send(c, 3 * 24 * 60 + 15, 210.0)
        await send(c, 15, 120.0)  # the gateway's buffered reading from day 0 arrives
    got = intervals(influx)
    # now measured: 100 → 120 in [0, 15) and 120 → 130 in [15, 30)
    assert got[0] == (20.0, False)
    assert got[15] == (10.0, False)
    assert got[3 * 24 * 60] == (10.0, False)  # 200 → 210, untouched by the late reading


async def test_restart_while_storage_is_down_never_overwrites_with_partial_values(
    influx_restartable: InfluxServer, tmp_path: Path
) -> None:
    influx = influx_restartable
    spool = tmp_path / "spool.sqlite"
    async with collector(influx, spool) as c:
        for minute in (0, 5, 10):
            await send(c, minute, float(minute))  # 1 kWh a minute
    assert intervals(influx) == {0: (10.0, False)}  # 0 → 5 → 10

    influx.stop()
    async with collector(influx, spool) as c:  # a restarted collector, storage unreachable
        await send(c, 20, 20.0)
        await send(c, 25, 25.0)
        await send(c, 35, 35.0)
        assert c.writer.spool_depth > 0
        influx.start()
        await wait_for(lambda: c.writer.spool_depth == 0, timeout_s=30, what="spool replayed")
        # a partial [15, 30) = 10 kWh (20 → 25 → 30, without 10 → 20) must not have been written
        assert intervals(influx).get(15) is None
        await send(c, 40, 40.0)  # the next batch runs the deferred repair
    # 1 kWh a minute throughout, so every full quarter hour holds 15 kWh:
    # [0,15): 0→5→10 and 10→15 of the 10→20 segment; [15,30): 15→20, 20→25, 25→30 of 25→35;
    # [30,45): 30→35 and 35→40 = 10 (data ends at minute 40)
    assert intervals(influx) == {0: (15.0, False), 15: (15.0, False), 30: (10.0, False)}


async def test_restart_seeds_history_back_to_the_interval_start(
    fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    influx = fresh_influx_db
    spool = tmp_path / "spool.sqlite"
    async with collector(influx, spool) as c:
        for minute in range(0, 12):
            await send(c, minute, 2.0 * minute)  # 2 kWh a minute
    async with collector(influx, spool) as c:  # restart: the engine starts empty
        for minute in range(12, 31):
            await send(c, minute, 2.0 * minute)
    # 2 kWh a minute: 30 kWh per quarter hour, including [0, 15) split across the restart
    got = intervals(influx)
    assert got[0] == (30.0, False) and got[15] == (30.0, False)


async def test_a_first_ever_reading_after_a_restart_joins_the_stored_history(
    fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    influx = fresh_influx_db
    spool = tmp_path / "spool.sqlite"
    async with collector(influx, spool) as c:
        for minute in range(1, 31):
            await send(c, minute, 1004.0 + minute)
    async with collector(influx, spool) as c:  # restart; then the meter's first reading
        await send(c, 0, 1000.0)
    # storage has nothing before 00:00 but everything after it: 1000 -> 1005 in the first
    # minute, then 1 kWh a minute; measured, not one estimated gap over the stored ones
    got = intervals(influx)
    assert got[0] == (19.0, False) and got[15] == (15.0, False)


class _Acks:
    def __init__(self) -> None:
        self.mids: list[int] = []

    def ack(self, mids: Sequence[int]) -> None:
        self.mids.extend(mids)


async def test_a_restarts_first_batch_loads_every_devices_history_in_a_few_requests(
    fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    influx = fresh_influx_db
    spool = tmp_path / "spool.sqlite"
    meters = [f"m{i}" for i in range(N_METERS)]
    async with collector(influx, spool) as c:
        for minute in range(0, 12):
            for m in meters:
                await send(c, minute, 2.0 * minute, device=m)
    async with collector(influx, spool) as c:  # restart: every meter is unknown to the engine
        assert isinstance(c.history, InfluxStorage)
        queries: list[httpx.Request] = []

        async def record(request: httpx.Request) -> None:
            if request.url.path == "/query":
                queries.append(request)

        c.history._client.event_hooks["request"].append(record)
        acks = _Acks()
        for mid, m in enumerate(meters):  # taken together: one batch
            body = {"ts": T0_S + 12 * MIN, "energy_import_kwh": 24.0}
            c.submit(topic(m), json.dumps(body).encode(), acks, mid)
        await wait_for(lambda: len(acks.mids) == N_METERS, what="the batch acked")
        # 2 requests for 40 devices' histories (the per-device path took 3 each: 120), and
        # one for the park's stored conflict flags from there on
        assert len(queries) == 3
        assert sum("interval_energy" in str(q.url) + q.content.decode() for q in queries) == 1
        for minute in range(13, 31):
            for m in meters:
                await send(c, minute, 2.0 * minute, device=m)
    # 2 kWh a minute: 30 kWh per quarter hour, including [0, 15) split across the restart
    for m in meters:
        got = intervals(influx, m)
        assert got[0] == (30.0, False) and got[15] == (30.0, False)
