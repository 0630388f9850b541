"""DurableWriter + spool against a real influxd that goes away and comes back (replay: both)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.intervals.models import IntervalEnergy
from app.storage import (
    DurableWriter,
    InfluxStorage,
    SpoolLocked,
    Storage,
    StorageRejected,
    WriteBatch,
    WriterClosed,
)
from app.storage.spool import SpoolDB
from app.telemetry.models import DeadLetter, Reading, RejectReason
from tests.fixtures.influx import InfluxServer, free_port

T0 = 1_795_400_000_000_000_000
S = 1_000_000_000
Q = 900 * S


def fast_writer(storage: Storage, path: Path, **kw: float) -> DurableWriter:
    return DurableWriter(storage, path, retry_initial_s=0.05, retry_max_s=0.3, **kw)  # type: ignore[arg-type]


def dead_storage() -> InfluxStorage:
    """A real connection-refused endpoint (nothing listens on the port)."""
    return InfluxStorage(f"http://127.0.0.1:{free_port()}", timeout_s=2)


def energy_by_ts(server: InfluxServer, device: str | None = None) -> dict[int, float]:
    where = f" WHERE device = '{device}'" if device else ""
    rows = server.points(f'SELECT "energy_kwh" FROM "reading"{where}')
    return {r["time"]: r["energy_kwh"] for r in rows}


async def test_outage_while_writing_loses_nothing_and_keeps_order(
    influx_restartable: InfluxServer, tmp_path: Path
) -> None:
    server = influx_restartable
    storage = InfluxStorage(server.url, server.database, timeout_s=3)
    writer = fast_writer(storage, tmp_path / "spool.db")
    writer.start()
    n, stop_at, start_at, redo = 2000, 400, 1200, 800
    stopping: asyncio.Task[None] | None = None
    try:
        for i in range(n):
            if i == stop_at:
                # crash it (SIGKILL) while writes keep coming
                stopping = asyncio.create_task(asyncio.to_thread(server.stop, kill=True))
            if i == start_at:
                assert stopping is not None
                await stopping
                assert writer.spool_depth > 0
                await asyncio.to_thread(server.start)
            readings = [Reading("p", f"d{i % 5}", T0 + i * S, {"energy_kwh": float(i)})]
            if i >= redo:
                # a later recomputation of an earlier point (same device: redo % 5 == 0)
                j = i - redo
                readings.append(Reading("p", f"d{j % 5}", T0 + j * S, {"energy_kwh": i + 0.5}))
            intervals = [
                IntervalEnergy("p", "d0", "pv", T0, T0 + Q, {"energy_kwh": float(i)}),
            ]
            await writer.write(WriteBatch(readings=readings, intervals=intervals))
        assert await writer.drain(timeout_s=60)
    finally:
        await writer.close()
        await storage.close()

    assert writer.spooled_batches > 0 and writer.replayed_batches == writer.spooled_batches
    assert writer.written_batches + writer.spooled_batches == n
    assert writer.quarantined_count == 0
    got = energy_by_ts(server)
    # every point exactly once (one row per device+ts; the ts are all distinct here) ...
    assert len(got) == n
    # ... and the last write wins: points 0..1199 were rewritten at i = j + 800 with j + 800.5
    expected = {T0 + j * S: (j + redo + 0.5 if j < n - redo else float(j)) for j in range(n)}
    assert got == expected
    iv = server.points('SELECT "energy_kwh" FROM "interval_energy"')
    assert [r["energy_kwh"] for r in iv] == [float(n - 1)]


async def test_spooled_data_is_replayed_by_the_next_writer(
    storage_backend: Storage, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"
    down = dead_storage()
    first = fast_writer(down, path)
    first.start()  # its replayer keeps failing: storage is down
    batches = [
        WriteBatch(
            readings=[Reading("p", "d", T0 + i * S, {"energy_kwh": float(i)})],
            deadletters=[
                DeadLetter(T0 + i, "t", "p", None, RejectReason.INVALID_JSON, str(i), b"x")
            ]
            if i % 10 == 0
            else [],
        )
        for i in range(50)
    ]
    for b in batches:
        await first.write(b)  # returns: the batch is committed to the spool
    assert first.spool_depth == 50 and first.spool_bytes > 0 and first.written_batches == 0
    with pytest.raises(SpoolLocked):  # one writer per spool
        DurableWriter(down, path)
    await first.close()
    await down.close()
    with pytest.raises(WriterClosed):
        await first.write(batches[0])

    # the next writer (after a restart) replays into whichever backend is up
    second = fast_writer(storage_backend, path)
    assert second.spool_depth == 50  # found on disk
    second.start()
    try:
        assert await second.drain(timeout_s=30)
    finally:
        await second.close()
    assert second.replayed_batches == 50
    got = await storage_backend.readings("p", T0, T0 + 50 * S)
    assert {r.ts_ns: r.values["energy_kwh"] for r in got} == {
        T0 + i * S: float(i) for i in range(50)
    }
    dls = await storage_backend.deadletters("p", None, None)
    assert sorted(int(d.detail) for d in dls) == [0, 10, 20, 30, 40]


async def test_backpressure_blocks_writes_until_storage_returns(
    influx_restartable: InfluxServer, tmp_path: Path
) -> None:
    server = influx_restartable
    storage = InfluxStorage(server.url, server.database, timeout_s=2)
    writer = fast_writer(storage, tmp_path / "spool.db", max_spool_bytes=1)
    writer.start()
    try:
        server.stop()
        b1 = WriteBatch(readings=[Reading("p", "d", T0, {"energy_kwh": 1.0})])
        b2 = WriteBatch(readings=[Reading("p", "d", T0 + S, {"energy_kwh": 2.0})])
        # an empty spool always takes one batch, however large
        await asyncio.wait_for(writer.write(b1), timeout=10)
        assert writer.spool_depth == 1
        blocked = asyncio.create_task(writer.write(b2))
        await asyncio.sleep(1.0)
        assert not blocked.done(), "write() must wait, not drop or return"
        assert writer.spool_depth == 1
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(blocked, timeout=30)
        assert await writer.drain(timeout_s=30)
    finally:
        await writer.close()
        await storage.close()
    assert energy_by_ts(server) == {T0: 1.0, T0 + S: 2.0}


async def test_close_releases_writers_blocked_on_backpressure(tmp_path: Path) -> None:
    storage = dead_storage()
    writer = fast_writer(storage, tmp_path / "spool.db", max_spool_bytes=1)
    await writer.write(WriteBatch(readings=[Reading("p", "d", T0, {"x": 1.0})]))
    blocked = asyncio.create_task(
        writer.write(WriteBatch(readings=[Reading("p", "d", T0 + 1, {"x": 2.0})]))
    )
    await asyncio.sleep(0.2)
    assert not blocked.done()
    await writer.close()
    with pytest.raises(WriterClosed):
        await blocked  # not acknowledged: the source keeps it
    await storage.close()
    # and the first batch is still on disk
    db = SpoolDB(tmp_path / "spool.db")
    try:
        assert db.stats()[0] == 1
    finally:
        db.close()


def _conflict_setup(server: InfluxServer) -> None:
    # `weird` already exists as an integer field of `reading` in this shard (types are per
    # measurement and shard, not per series): any float `weird` is now a type conflict.
    r = server.write_lines(f"reading,device=other,park=p weird=1i {T0}")
    assert r.status_code == 204, r.text


async def test_rejected_points_are_quarantined_not_lost_not_retried(
    fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    _conflict_setup(fresh_influx_db)
    storage = InfluxStorage(fresh_influx_db.url, fresh_influx_db.database)
    writer = fast_writer(storage, tmp_path / "spool.db")
    writer.start()
    good = [Reading("p", "good", T0 + i * S, {"energy_kwh": float(i)}) for i in range(16)]
    bad = Reading("p", "bad", T0 + 5 * S, {"energy_kwh": 5.0, "weird": 5.5})
    nan = Reading("p", "good", T0 + 99 * S, {"energy_kwh": float("nan")})
    try:
        await writer.write(WriteBatch(readings=[*good[:7], bad, *good[7:], nan]))
        assert writer.spool_depth == 0  # nothing left to retry
        errors_after_write = writer.storage_errors
        await asyncio.sleep(0.5)
        assert writer.storage_errors == errors_after_write  # and nothing is being retried
        q = await writer.quarantined()
    finally:
        await writer.close()
        await storage.close()
    assert energy_by_ts(fresh_influx_db, "good") == {T0 + i * S: float(i) for i in range(16)}
    assert len(q) == 2 and writer.quarantined_count == 2
    by_error = {("type conflict" in e.error): e for e in q}
    assert by_error[True].batch == WriteBatch(readings=[bad])
    assert by_error[False].batch is not None and by_error[False].batch.readings[0].device == "good"
    assert "non-finite" in by_error[False].error
    # bisection, not one request per point: 18 points cost far fewer than 36 failed requests
    assert writer.storage_errors < 20


async def test_rejected_points_in_a_replay_are_quarantined_once(
    fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    _conflict_setup(fresh_influx_db)
    path = tmp_path / "spool.db"
    down = dead_storage()
    first = fast_writer(down, path)
    await first.write(WriteBatch(readings=[Reading("p", "good", T0, {"energy_kwh": 1.0})]))
    await first.write(WriteBatch(readings=[Reading("p", "bad", T0 + S, {"weird": 2.5})]))
    await first.write(WriteBatch(readings=[Reading("p", "good", T0 + S, {"energy_kwh": 3.0})]))
    await first.close()
    await down.close()

    up = InfluxStorage(fresh_influx_db.url, fresh_influx_db.database)
    second = fast_writer(up, path)
    second.start()
    try:
        assert await second.drain(timeout_s=30)
        q = await second.quarantined()
    finally:
        await second.close()
        await up.close()
    assert [x.batch for x in q] == [
        WriteBatch(readings=[Reading("p", "bad", T0 + S, {"weird": 2.5})])
    ]
    assert "field type conflict" in q[0].error
    assert energy_by_ts(fresh_influx_db, "good") == {T0: 1.0, T0 + S: 3.0}


async def test_storage_rejected_is_raised_by_influx_for_conflicts(
    fresh_influx_db: InfluxServer,
) -> None:
    # the premise of the quarantine tests: this conflict is a 4xx, not a retryable error
    _conflict_setup(fresh_influx_db)
    storage = InfluxStorage(fresh_influx_db.url, fresh_influx_db.database)
    try:
        with pytest.raises(StorageRejected):
            await storage.write(WriteBatch(readings=[Reading("p", "bad", T0 + S, {"weird": 1.5})]))
    finally:
        await storage.close()
