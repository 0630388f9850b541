"""EmbeddedStorage-only behaviour: persistence, crash safety, WAL concurrency, bad paths."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.intervals.models import IntervalEnergy
from app.storage import EmbeddedStorage, StorageUnavailable, WriteBatch
from app.storage.factory import open_storage
from app.telemetry.models import DeadLetter, Reading, RejectReason

T0 = 1_795_400_000_000_000_000
S = 1_000_000_000
Q = 900 * S


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    r = Reading("p", "d", T0, {"energy_kwh": 1.25}, reset=True)
    iv = IntervalEnergy("p", "d", "pv", T0, T0 + Q, {"energy_kwh": 0.5}, True, ("gap",))
    dl = DeadLetter(T0, "t", None, None, RejectReason.INVALID_JSON, "bad", b"\x00{")
    async with EmbeddedStorage(path) as s:
        await s.write(WriteBatch(readings=[r], intervals=[iv], deadletters=[dl]))
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    async with EmbeddedStorage(path) as s:
        assert await s.readings("p", T0, T0 + 1) == [r]
        assert await s.intervals("p", T0, T0 + 1) == [iv]
        assert await s.deadletters(None, None, None) == [dl]


_CHILD = """
import asyncio, sys
from app.storage import EmbeddedStorage, WriteBatch
from app.telemetry.models import Reading

async def main() -> None:
    s = EmbeddedStorage(sys.argv[1])
    for i in range(50):
        r = Reading("p", "d", {t0} + i, {{"energy_kwh": float(i)}})
        await s.write(WriteBatch(readings=[r]))
    print("written", flush=True)
    await asyncio.sleep(60)  # killed here, never closed

asyncio.run(main())
"""


async def test_a_killed_process_loses_nothing_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(t0=T0), str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), timeout=30)
        assert line.strip() == "written"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    async with EmbeddedStorage(path) as s:
        got = await s.readings("p", T0, T0 + 100)
    assert [r.values["energy_kwh"] for r in got] == [float(i) for i in range(50)]


async def test_readers_see_whole_batches_while_another_process_writes(tmp_path: Path) -> None:
    # two stores on one file, as `lingtan collect` and `lingtan api` in separate processes
    path = tmp_path / "store.sqlite"
    writer, reader = EmbeddedStorage(path), EmbeddedStorage(path)
    batch_size, n_batches = 2000, 15
    counts: list[int] = []
    done = asyncio.Event()

    async def write_all() -> None:
        for b in range(n_batches):
            rs = [
                Reading("p", f"d{i % 7}", T0 + (b * batch_size + i) * S, {"x": float(i)})
                for i in range(batch_size)
            ]
            await writer.write(WriteBatch(readings=rs))
        done.set()

    async def read_all() -> None:
        while not done.is_set():
            counts.append(len(await reader.readings("p", 0, 2**62)))
            await asyncio.sleep(0)

    try:
        await asyncio.gather(write_all(), read_all())
        counts.append(len(await reader.readings("p", 0, 2**62)))
    finally:
        await writer.close()
        await reader.close()
    assert len(counts) > 2
    # one transaction per batch: a reader never sees part of one, and never goes back
    assert all(c % batch_size == 0 for c in counts), counts
    assert counts == sorted(counts) and counts[-1] == batch_size * n_batches


async def test_reads_go_on_while_the_write_lock_is_held(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    s = EmbeddedStorage(path, busy_timeout_s=0.3)
    await s.write(WriteBatch(readings=[Reading("p", "d", T0, {"x": 1.0})]))
    other = sqlite3.connect(str(path), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        other.execute("DELETE FROM reading")  # uncommitted: invisible to readers
        t = time.monotonic()
        assert len(await s.readings("p", 0, 2**62)) == 1  # WAL: not blocked
        assert time.monotonic() - t < 0.25
        with pytest.raises(StorageUnavailable, match="locked"):
            await s.write(WriteBatch(readings=[Reading("p", "d", T0 + 1, {"x": 2.0})]))
        other.execute("ROLLBACK")
        # the data is fine, the store is free again: the retry succeeds
        await s.write(WriteBatch(readings=[Reading("p", "d", T0 + 1, {"x": 2.0})]))
        assert len(await s.readings("p", 0, 2**62)) == 2
    finally:
        other.close()
        await s.close()


async def test_a_big_write_does_not_block_the_event_loop(tmp_path: Path) -> None:
    rs = [Reading("p", f"d{i % 50}", T0 + i, {"energy_kwh": i * 0.5}) for i in range(60_000)]
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - t - 0.01)

    async with EmbeddedStorage(tmp_path / "store.sqlite") as s:
        tick = asyncio.create_task(ticker())
        t = time.monotonic()
        await s.write(WriteBatch(readings=rs))
        took = time.monotonic() - t
        tick.cancel()
    assert len(lags) >= 3, f"the loop did not run during a {took:.2f} s write"
    # a blocked loop would see one lag as long as the write itself
    assert max(lags) < took / 2, (max(lags), took)


async def test_an_interval_is_keyed_by_device_not_role(tmp_path: Path) -> None:
    # a device whose registry role changed must not count twice (influx would keep both)
    a = IntervalEnergy("p", "d", "load", T0, T0 + Q, {"energy_import_kwh": 1.0})
    b = IntervalEnergy("p", "d", "heat_pump", T0, T0 + Q, {"energy_import_kwh": 2.0})
    async with EmbeddedStorage(tmp_path / "store.sqlite") as s:
        await s.write(WriteBatch(intervals=[a]))
        await s.write(WriteBatch(intervals=[b]))
        assert await s.intervals("p", T0, T0 + 1) == [b]


async def test_a_corrupt_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is not a database, just some text " * 200)
    with pytest.raises(StorageUnavailable, match="not a database") as e:
        EmbeddedStorage(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("kind", ["parent is a file", "path is a directory"])
async def test_an_unusable_path_gives_a_clear_error(tmp_path: Path, kind: str) -> None:
    if kind == "parent is a file":
        (tmp_path / "f").write_text("x")
        path = tmp_path / "f" / "store.sqlite"
    else:
        path = tmp_path / "dir"
        path.mkdir()
    with pytest.raises(StorageUnavailable, match="cannot open embedded store") as e:
        EmbeddedStorage(path)
    assert str(path) in str(e.value)


async def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    async with EmbeddedStorage(path):
        pass
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StorageUnavailable, match="newer"):
        EmbeddedStorage(path)


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    s = EmbeddedStorage(tmp_path / "store.sqlite")
    await s.close()
    await s.close()  # idempotent
    assert not await s.ping()
    with pytest.raises(StorageUnavailable, match="closed"):
        await s.write(WriteBatch(readings=[Reading("p", "d", T0, {"x": 1.0})]))


async def test_open_storage_without_influx_is_embedded_in_the_data_dir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data", influx_url=None, _env_file=None)  # type: ignore[call-arg]
    with caplog.at_level(logging.INFO, logger="app.storage.factory"):
        s = await open_storage(settings)
    try:
        assert isinstance(s, EmbeddedStorage)
        assert s.path == tmp_path / "data" / "lingtan-store.sqlite"
        assert s.path.exists()
        assert "embedded" in caplog.text and str(s.path) in caplog.text
        await s.write(WriteBatch(readings=[Reading("p", "d", T0, {"x": 1.0})]))
        assert await s.ping()
    finally:
        await s.close()


async def test_role_sums_follow_every_write_exactly(tmp_path: Path) -> None:
    iv = IntervalEnergy
    async with EmbeddedStorage(tmp_path / "store.sqlite") as s:
        await s.write(
            WriteBatch(
                intervals=[
                    iv(
                        "p",
                        "g",
                        "grid",
                        T0,
                        T0 + Q,
                        {"energy_import_kwh": 10.0, "energy_export_kwh": 1.0},
                    ),
                    iv("p", "pv1", "pv", T0, T0 + Q, {"energy_kwh": 4.0}, estimated=True),
                    iv("p", "pv2", "pv", T0, T0 + Q, {"energy_kwh": 2.5}),
                    iv("p", "l1", "load", T0, T0 + Q, {"energy_import_kwh": 3.0}),
                    iv("p", "pv1", "pv", T0 + Q, T0 + 2 * Q, {"energy_kwh": 1.0}),
                    iv("other", "pv1", "pv", T0, T0 + Q, {"energy_kwh": 100.0}),
                ]
            )
        )
        got = await s.interval_role_sums("p", T0, T0 + 2 * Q)
        assert [(r.start_ns, r.role, r.rows, r.estimated) for r in got] == [
            (T0, "grid", 1, 0), (T0, "load", 1, 0), (T0, "pv", 2, 1), (T0 + Q, "pv", 1, 0),
        ]  # fmt: skip
        assert got[0].sums == {
            "energy_import_kwh": 10.0,
            "energy_export_kwh": 1.0,
            "energy_kwh": 0.0,
        }
        assert got[2].sums["energy_kwh"] == 6.5 and got[2].end_ns == T0 + Q
        # late data recomputes pv1 (now measured, 5.0); l1 turns out to be a heat pump
        await s.write(
            WriteBatch(
                intervals=[
                    iv("p", "pv1", "pv", T0, T0 + Q, {"energy_kwh": 5.0}),
                    iv("p", "l1", "heat_pump", T0, T0 + Q, {"energy_import_kwh": 3.5}),
                ]
            )
        )
        got = await s.interval_role_sums("p", T0, T0 + Q)
        assert [(r.role, r.rows, r.estimated) for r in got] == [
            ("grid", 1, 0), ("heat_pump", 1, 0), ("pv", 2, 0),
        ]  # fmt: skip
        assert got[1].sums["energy_import_kwh"] == 3.5 and got[2].sums["energy_kwh"] == 7.5
        assert [r.role for r in await s.interval_role_sums("p", 0, 2**62, roles=["pv"])] == [
            "pv",
            "pv",
        ]
        assert await s.interval_role_sums("p", 0, 2**62, roles=[]) == []
        # every (device, role) ever written, as influx's series list
        assert await s.interval_series("p") == {
            ("g", "grid"), ("pv1", "pv"), ("pv2", "pv"), ("l1", "load"), ("l1", "heat_pump"),
        }  # fmt: skip


async def test_role_sums_of_an_older_store_are_rebuilt_on_open(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    a = IntervalEnergy("p", "pv1", "pv", T0, T0 + Q, {"energy_kwh": 4.0})
    b = IntervalEnergy("p", "pv2", "pv", T0, T0 + Q, {"energy_kwh": 0.25})
    async with EmbeddedStorage(path) as s:
        await s.write(WriteBatch(intervals=[a, b]))
    db = sqlite3.connect(str(path))
    db.execute("DELETE FROM interval_role_total")  # as a version-1 store had none
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    async with EmbeddedStorage(path) as s:
        (got,) = await s.interval_role_sums("p", T0, T0 + Q)
    assert (got.role, got.rows, got.sums["energy_kwh"]) == ("pv", 2, 4.25)


# Unlike line protocol, the embedded store can keep any id or value name: no filter here.
_any_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    park=_any_text,
    device=_any_text,
    values=st.dictionaries(_any_text, st.floats(allow_nan=False, allow_infinity=False), min_size=1),
    ts=st.integers(min_value=-(2**63), max_value=2**63 - 2),
)
async def test_any_id_and_value_name_round_trips(
    tmp_path: Path, park: str, device: str, values: dict[str, float], ts: int
) -> None:
    # a store per example: the same key in two examples would merge
    async with EmbeddedStorage(tmp_path / uuid.uuid4().hex / "store.sqlite") as s:
        r = Reading(park, device, ts, values)
        await s.write(WriteBatch(readings=[r]))
        assert await s.readings(park, ts, ts + 1, device=device) == [r]
        assert await s.last_readings(park, device, ts + 1, 1) == [r]
