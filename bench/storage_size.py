"""Benchmark of raw readings on disk: bytes per reading and write throughput, old and new layout.

The same synthetic readings (default 1,000 meters, one a minute for a day: noisy import
counters in 0.01 kWh, power in 0.001 kW, an export counter on one meter in ten, timestamps
with up to 250 ms of jitter) are written, in collector-sized batches, to

- `old`: the embedded store with compaction off: one JSON row per reading, the layout of
  schema 3 (before compaction);
- `new`: the embedded store as shipped: hourly compact blocks (compaction every minute while
  writing, then once more at the end, all counted in the write time);

and, for the size only, to two other candidate layouts in scratch SQLite files:

- `int-rows`: one WITHOUT ROWID row per reading, device as an integer, values as scaled
  integers (SQLite's own variable-length integers);
- `day-blocks`: the same block codec per device and UTC day instead of hour.

Bytes are SQLite's pages of the readings' tables and indexes (`dbstat`), after a checkpoint.

    .venv/bin/python bench/storage_size.py                      # 1,000 meters x 24 h
    .venv/bin/python bench/storage_size.py --meters 200 --hours 6
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from app.storage import readingblock
from app.storage.base import WriteBatch
from app.storage.embedded import EmbeddedStorage
from app.telemetry.models import Reading

T0 = 1_795_392_000_000_000_000  # 2026-11-23T00:00:00Z
MIN = 60_000_000_000
BATCH = 5_000  # the collector's default batch (LINGTAN_BATCH_MAX_READINGS)


def synthetic(meters: int, hours: int, seed: int = 14) -> Iterator[list[Reading]]:
    """Batches of readings in arrival order: every meter once a minute."""
    rng = random.Random(seed)
    base_kw = [rng.uniform(2.0, 400.0) for _ in range(meters)]
    imp = [rng.uniform(0.0, 2e6) for _ in range(meters)]
    exp = [rng.uniform(0.0, 1e5) for _ in range(meters)]
    batch: list[Reading] = []
    for minute in range(hours * 60):
        for m in range(meters):
            kw = max(
                0.0,
                base_kw[m] * (1 + 0.3 * ((minute % 1440) / 1440)) + rng.gauss(0, 0.05 * base_kw[m]),
            )
            imp[m] += kw / 60
            values = {"energy_import_kwh": round(imp[m], 2), "power_kw": round(kw, 3)}
            if m % 10 == 0:
                exp[m] += rng.choice((0.0, 0.0, 0.01, 0.02))
                values["energy_export_kwh"] = round(exp[m], 2)
            ts = T0 + minute * MIN + rng.randrange(250) * 1_000_000
            batch.append(Reading("park-1", f"meter-{m:04d}", ts, values))
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def raw_bytes(path: Path, tables: tuple[str, ...]) -> int:
    db = sqlite3.connect(path)
    try:
        owner = dict(db.execute("SELECT name, tbl_name FROM sqlite_schema"))
        return sum(
            int(n)
            for name, n in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
            if owner.get(name) in tables
        )
    finally:
        db.close()


async def store(path: Path, meters: int, hours: int, compact: bool) -> tuple[int, float]:
    s = EmbeddedStorage(path, synchronous="NORMAL", compact_every_s=60.0 if compact else None)
    n = 0
    t = time.perf_counter()
    for batch in synthetic(meters, hours):
        await s.write(WriteBatch(readings=batch))
        n += len(batch)
    if compact:
        await s.compact()
    dt = time.perf_counter() - t
    await s.close()
    return n, n / dt


def int_rows(path: Path, meters: int, hours: int) -> int:
    """Candidate: one WITHOUT ROWID row per reading, scaled integers."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(
        "CREATE TABLE r (device INTEGER, ts_ns INTEGER, imp INTEGER, pw INTEGER, exp INTEGER,"
        " flags INTEGER, PRIMARY KEY (device, ts_ns)) WITHOUT ROWID"
    )
    ids: dict[str, int] = {}
    for batch in synthetic(meters, hours):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO r VALUES (?, ?, ?, ?, ?, 0)",
            [
                (
                    ids.setdefault(r.device, len(ids)),
                    r.ts_ns,
                    round(r.values["energy_import_kwh"] * 100),
                    round(r.values["power_kw"] * 1000),
                    round(r.values["energy_export_kwh"] * 100)
                    if "energy_export_kwh" in r.values
                    else None,
                )
                for r in batch
            ],
        )
        db.execute("COMMIT")
    db.close()
    return raw_bytes(path, ("r",))


def day_blocks(path: Path, meters: int, hours: int) -> int:
    """Candidate: the hourly store's codec, one block per device and UTC day."""
    points: dict[tuple[str, int], list[readingblock.Point]] = {}
    for batch in synthetic(meters, hours):
        for r in batch:
            points.setdefault((r.device, r.ts_ns // 86_400_000_000_000), []).append(
                readingblock.Point(r.ts_ns, r.values)
            )
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "CREATE TABLE b (park TEXT, device TEXT, day INTEGER, n INTEGER, data BLOB,"
        " PRIMARY KEY (park, device, day)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX b_park ON b (park, day)")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO b VALUES ('park-1', ?, ?, ?, ?)",
        [(d, day, len(ps), readingblock.encode(ps)) for (d, day), ps in points.items()],
    )
    db.execute("COMMIT")
    db.close()
    return raw_bytes(path, ("b",))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--no-candidates", action="store_true", help="old and new layout only")
    args = ap.parse_args()
    n = args.meters * args.hours * 60
    print(
        f"{args.meters} meters x {args.hours} h, one reading a minute: {n:,} readings", flush=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, compact in (("old", False), ("new", True)):
            path = Path(tmp) / f"{name}.sqlite"
            print(f"… writing {name}", file=sys.stderr, flush=True)
            count, rate = asyncio.run(store(path, args.meters, args.hours, compact))
            assert count == n
            size = raw_bytes(path, ("reading", "reading_block"))
            rows.append((name, size, f"{rate:,.0f}"))
        if not args.no_candidates:
            print("… candidate int-rows", file=sys.stderr, flush=True)
            rows.append(
                ("int-rows", int_rows(Path(tmp) / "int.sqlite", args.meters, args.hours), "-")
            )
            print("… candidate day-blocks", file=sys.stderr, flush=True)
            rows.append(
                ("day-blocks", day_blocks(Path(tmp) / "day.sqlite", args.meters, args.hours), "-")
            )
    print(f"{'layout':<12} {'bytes/reading':>14} {'MB':>9} {'writes/s':>10}")
    for name, size, rate in rows:
        print(f"{name:<12} {size / n:>14.1f} {size / 1e6:>9.1f} {rate:>10}")
    year_gb = rows[1][1] / n * 1000 * 525_600 / 1e9
    print(f"new layout, 1,000 meters for a year: ~{year_gb:.1f} GB of raw readings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
