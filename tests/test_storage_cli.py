"""`lingtan storage stats|prune|compact` on a real embedded store and a real influxd."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.storage import EmbeddedStorage, InfluxStorage, WriteBatch
from app.storage.base import FAR_NS, NS_PER_DAY
from app.storage.factory import EMBEDDED_FILENAME
from app.telemetry.models import Reading
from lingtan.cli import main
from tests.fixtures.influx import InfluxServer

T0 = 1_795_392_000_000_000_000  # 2026-11-23T00:00:00Z
MIN = 60_000_000_000


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _fill(path: Path) -> list[Reading]:
    readings = [
        Reading("p", f"m{m}", T0 - d * NS_PER_DAY + i * MIN, {"energy_kwh": i * 0.25})
        for m in range(5)
        for d in range(3)
        for i in range(0, 24 * 60, 10)
    ]

    async def go() -> None:
        async with EmbeddedStorage(path, compact_every_s=0) as s:
            await s.write(WriteBatch(readings=readings))

    asyncio.run(go())
    return readings


def test_stats_reports_what_the_file_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LINGTAN_INFLUX_URL", raising=False)
    readings = _fill(tmp_path / EMBEDDED_FILENAME)
    code, out, err = run(capsys, "storage", "stats", "--data-dir", str(tmp_path))
    assert code == 0, err
    assert "counting rows of reading_block" in err  # progress on stderr
    db = sqlite3.connect(tmp_path / EMBEDDED_FILENAME)
    blocks = db.execute("SELECT count(*) FROM reading_block").fetchone()[0]
    raw_bytes = sum(
        n for (n,) in db.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name IN"
            " ('reading', 'reading_block', 'reading_park_ts', 'reading_block_park')"
        )
    )  # fmt: skip
    db.close()
    assert re.search(rf"^reading_block\s+{blocks:,}\s", out, re.M), out
    m = re.search(
        r"raw readings: ([\d,]+) \(([\d,]+) compacted, ([\d,]+) open\), ([\d.]+) bytes", out
    )
    assert m, out
    assert int(m[1].replace(",", "")) == len(readings)
    assert float(m[4]) == pytest.approx(raw_bytes / len(readings), abs=0.1)
    last = datetime.fromtimestamp(max(r.ts_ns for r in readings) // 10**9, UTC)
    assert f"from 2026-11-21 00:00 UTC to {last:%Y-%m-%d %H:%M} UTC" in out


def test_prune_deletes_old_raw_readings_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LINGTAN_INFLUX_URL", raising=False)
    monkeypatch.delenv("LINGTAN_RAW_RETENTION_DAYS", raising=False)
    path = tmp_path / EMBEDDED_FILENAME
    readings = _fill(path)
    old = [r for r in readings if r.ts_ns < T0 - NS_PER_DAY]
    code, _, err = run(capsys, "storage", "prune", "--data-dir", str(tmp_path))
    assert code == 2 and "no retention" in err
    code, out, _ = run(
        capsys,
        "storage",
        "prune",
        "--data-dir",
        str(tmp_path),
        "--before",
        "2026-11-22",
        "--dry-run",
    )
    assert code == 0 and f"would delete {len(old):,} raw readings" in out
    code, out, _ = run(
        capsys, "storage", "prune", "--data-dir", str(tmp_path), "--before", "2026-11-22"
    )
    assert code == 0 and f"deleted {len(old):,} raw readings" in out

    async def left() -> list[Reading]:
        async with EmbeddedStorage(path) as s:
            return await s.readings("p", 0, FAR_NS)

    assert len(asyncio.run(left())) == len(readings) - len(old)


def test_stats_on_influx_shows_series_and_measurements(
    fresh_influx_db: InfluxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async def go() -> None:
        s = InfluxStorage(fresh_influx_db.url, fresh_influx_db.database)
        await s.write(
            WriteBatch(readings=[Reading("p", f"d{i}", T0, {"x": 1.0}) for i in range(4)])
        )
        await s.close()

    asyncio.run(go())
    code, out, err = run(
        capsys, "storage", "stats", "--influx-url", fresh_influx_db.url,
        "--influx-db", fresh_influx_db.database,
    )  # fmt: skip
    assert code == 0, err
    assert "measurements: reading" in out
    assert "series cardinality: 4" in out
    assert "data directory on disk: n/a" in out


def test_compact_then_vacuum_shrinks_an_uncompacted_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LINGTAN_INFLUX_URL", raising=False)
    path = tmp_path / EMBEDDED_FILENAME
    readings = [
        Reading("p", f"m{m}", T0 + i * MIN, {"energy_kwh": i * 0.25, "power_kw": 15.0})
        for m in range(20)
        for i in range(300)
    ]

    async def write() -> None:
        async with EmbeddedStorage(path, compact_every_s=None) as s:  # as schema 3 kept them
            await s.write(WriteBatch(readings=readings))

    asyncio.run(write())
    before = path.stat().st_size
    code, out, err = run(capsys, "storage", "compact", "--vacuum", "--data-dir", str(tmp_path))
    assert code == 0, err
    assert f"compacted {len(readings):,} raw readings" in out
    assert "readings compacted" in err  # progress
    assert path.stat().st_size < before / 5

    async def read() -> list[Reading]:
        async with EmbeddedStorage(path) as s:
            return await s.readings("p", 0, FAR_NS)

    assert asyncio.run(read()) == sorted(readings, key=lambda r: (r.ts_ns, r.device))
