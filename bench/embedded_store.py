"""Benchmark of `EmbeddedStorage`: write throughput (points/s) and a cold year-of-intervals load."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from app.intervals.models import IntervalEnergy
from app.storage.base import WriteBatch
from app.storage.embedded import EmbeddedStorage
from app.telemetry.models import Reading

T0 = 1_767_196_800_000_000_000  # 2026-01-01T00:00:00+08:00 as UTC epoch ns (2025-12-31T16Z)
S = 1_000_000_000
Q = 900 * S


async def bench_writes(path: Path, sync: str, batches: int, batch_size: int) -> float:
    s = EmbeddedStorage(path, synchronous=sync)  # type: ignore[arg-type]
    devices = 50
    n = 0
    t = time.perf_counter()
    for b in range(batches):
        rs = []
        for i in range(batch_size):
            k = b * batch_size + i
            rs.append(
                Reading(
                    "p",
                    f"d{k % devices}",
                    T0 + (k // devices) * S,
                    {"energy_import_kwh": 1000.0 + k * 0.01, "power_kw": 12.5},
                )
            )
        ivs = [
            IntervalEnergy("p", f"d{d}", "load", T0 + b * Q, T0 + (b + 1) * Q, {"energy_kwh": 1.5})
            for d in range(devices)
        ]
        await s.write(WriteBatch(readings=rs, intervals=ivs))
        n += len(rs) + len(ivs)
    dt = time.perf_counter() - t
    await s.close()
    return n / dt


def _role(d: int) -> str:
    return "grid" if d == 0 else ("pv" if d <= 5 else "load")


def _values(d: int, j: int) -> dict[str, float]:
    if d == 0:
        return {"energy_import_kwh": 10.0 + j / 7, "energy_export_kwh": 0.0}
    if d <= 5:
        return {"energy_kwh": j / 3}
    return {"energy_import_kwh": 1.0 + j / 9}


async def bench_year(path: Path, devices: int) -> None:
    s = EmbeddedStorage(path)
    per_year = 365 * 96
    t = time.perf_counter()
    for day in range(365):
        ivs = [
            IntervalEnergy(
                "p",
                f"dev-{d:03d}",
                _role(d),
                T0 + (day * 96 + j) * Q,
                T0 + (day * 96 + j + 1) * Q,
                _values(d, j),
            )
            for j in range(96)
            for d in range(devices)
        ]
        await s.write(WriteBatch(intervals=ivs))
    fill = time.perf_counter() - t
    await s.close()
    print(
        f"year of 15-min intervals, {devices} devices: {per_year * devices:,} rows, "
        f"written at {per_year * devices / fill:,.0f} intervals/s"
    )
    # a new store object: fresh connections (the OS page cache is warm, as it would be)
    s = EmbeddedStorage(path)
    t = time.perf_counter()
    rows = await s.intervals("p", T0, T0 + per_year * Q)
    full = time.perf_counter() - t
    assert len(rows) == per_year * devices, len(rows)
    del rows
    print(f"  intervals(): whole year in one query {full:.2f} s")
    # the balance cache loads 31 days per query
    t = time.perf_counter()
    n = 0
    for m in range(0, 365, 31):
        n += len(await s.intervals("p", T0 + m * 96 * Q, T0 + min(365, m + 31) * 96 * Q))
    months = time.perf_counter() - t
    assert n == per_year * devices
    print(f"  intervals(): year as 31-day queries {months:.2f} s")
    t = time.perf_counter()
    sums = await s.interval_role_sums("p", T0, T0 + per_year * Q)
    agg = time.perf_counter() - t
    assert len(sums) == per_year * 3, len(sums)
    print(
        f"  interval_role_sums(): year summed per interval and role {agg:.2f} s "
        f"({len(sums):,} rows)"
    )
    await s.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--devices", type=int, default=50)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            pps = await bench_writes(Path(tmp) / f"w-{sync}.sqlite", sync, a.batches, a.batch_size)
            print(
                f"write synchronous={sync}: {pps:,.0f} points/s "
                f"({a.batches} batches of {a.batch_size} readings + 50 intervals)"
            )
        await bench_year(Path(tmp) / "year.sqlite", a.devices)


if __name__ == "__main__":
    asyncio.run(main())
