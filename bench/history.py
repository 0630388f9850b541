"""Restart benchmark: a collector's first batch for N known devices, batched vs per-device history.

Starts its own influxd (or opens an embedded store in a temp dir), stores the last
`--minutes` of one-a-minute readings for each of N devices, then times in this one process,
alternating the two paths (median of `--repeat` runs each):

- history: loading what the restarted interval engine needs for all N devices, once through
  `Storage.histories` (a few requests) and once through `histories_one_by_one` (three
  single-device queries per device, 16 devices in flight: the collector's former path);
- first batch: a fresh `Collector` taking one reading of every device and flushing it (history
  lookups, interval engine, write through the spool), once per path.

Every timed run sees the same stored data: an untimed warm-up of each path writes the batch
first (rewriting the same points later changes nothing). Run:

    .venv/bin/python bench/history.py --devices 200 2000
    .venv/bin/python bench/history.py --devices 200 2000 --store embedded
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.intervals import interval_start_ns  # noqa: E402
from app.registry import parse_registry  # noqa: E402
from app.registry.models import Registry  # noqa: E402
from app.storage.base import History, Storage, WriteBatch, histories_one_by_one  # noqa: E402
from app.storage.embedded import EmbeddedStorage  # noqa: E402
from app.storage.influx import InfluxStorage  # noqa: E402
from app.storage.spool import DurableWriter  # noqa: E402
from app.telemetry.models import Reading  # noqa: E402
from collectors.pipeline import Collector  # noqa: E402
from tests.fixtures.influx import running_influx  # noqa: E402

PARK = "bench"
T_RESTART_S = 1_795_000_000  # 2026-11-18T08:53:20Z, safely in the past
MIN_NS = 60 * 10**9


class OneByOneInflux(InfluxStorage):
    """InfluxStorage answering `histories` the former way: three queries per device."""

    async def histories(
        self, park: str, first_ns: Mapping[str, int], align: Callable[[int], int]
    ) -> dict[str, History]:
        return await histories_one_by_one(self, park, first_ns, align)


class OneByOneEmbedded(EmbeddedStorage):
    """EmbeddedStorage answering `histories` the former way: three queries per device."""

    async def histories(
        self, park: str, first_ns: Mapping[str, int], align: Callable[[int], int]
    ) -> dict[str, History]:
        return await histories_one_by_one(self, park, first_ns, align)


def registry(devices: int) -> Registry:
    lines = ["parks:", f"  - id: {PARK}", "    timezone: Asia/Shanghai", "    devices:"]
    lines += ["      - {id: grid-main, role: grid}"]
    lines += [f"      - {{id: m{i}, role: load, included_in: grid-main}}" for i in range(devices)]
    return parse_registry("\n".join(lines) + "\n")


def stored_history(devices: int, minutes: int) -> list[Reading]:
    t_end = T_RESTART_S * 10**9
    return [
        Reading(PARK, f"m{i}", t_end - k * MIN_NS, {"energy_import_kwh": 1000.0 - k * 0.5})
        for i in range(devices)
        for k in range(minutes, 0, -1)
    ]


def restart_batch(devices: int) -> list[tuple[str, bytes]]:
    body = json.dumps({"ts": T_RESTART_S, "energy_import_kwh": 1000.0}).encode()
    return [(f"lingtan/v1/{PARK}/m{i}/telemetry", body) for i in range(devices)]


class _Acker:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.done = asyncio.Event()

    def ack(self, mids: Sequence[int]) -> None:
        self.expected -= len(mids)
        if self.expected <= 0:
            self.done.set()


async def first_batch(reg: Registry, storage: Storage, spool: Path, devices: int) -> float:
    """Seconds from a fresh collector's start to the ack of its first batch (all devices)."""
    writer = DurableWriter(storage, spool)
    writer.start()
    c = Collector(
        reg,
        writer,
        storage,
        batch_max_items=devices + 1,
        batch_max_wait_s=0.0,
        max_unacked_messages=devices + 1,
        clock_ns=lambda: (T_RESTART_S + 60) * 10**9,
    )
    acker = _Acker(devices)
    for mid, (topic, payload) in enumerate(restart_batch(devices)):
        c.submit(topic, payload, acker, mid)
    try:
        started = time.perf_counter()
        c.start()
        await asyncio.wait_for(acker.done.wait(), 600)
        return time.perf_counter() - started
    finally:
        await c.stop()
        await writer.close()


async def lookups(storage: Storage, reg: Registry, devices: int) -> float:
    park = reg.park(PARK)
    assert park is not None
    first = {f"m{i}": T_RESTART_S * 10**9 for i in range(devices)}
    started = time.perf_counter()
    got = await storage.histories(PARK, first, lambda ts: interval_start_ns(ts, park))
    elapsed = time.perf_counter() - started
    assert len(got) == devices and all(rs for _, rs in got.values())
    return elapsed


async def median_pair(
    repeat: int, old: Callable[[], Awaitable[float]], new: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    await old()  # warm-up (also writes the batch, so every timed run sees the same data)
    await new()
    olds: list[float] = []
    news: list[float] = []
    for _ in range(repeat):
        olds.append(await old())
        news.append(await new())
    return statistics.median(olds), statistics.median(news)


async def run(
    stores: tuple[Storage, Storage], work: Path, devices: int, minutes: int, repeat: int
) -> None:
    old_store, new_store = stores
    reg = registry(devices)
    await new_store.write(WriteBatch(readings=stored_history(devices, minutes)))
    spool = iter(range(10**6))

    def batch(store: Storage) -> Callable[[], Awaitable[float]]:
        return lambda: first_batch(reg, store, work / f"spool-{next(spool)}.sqlite", devices)

    h_old, h_new = await median_pair(
        repeat, lambda: lookups(old_store, reg, devices), lambda: lookups(new_store, reg, devices)
    )
    b_old, b_new = await median_pair(repeat, batch(old_store), batch(new_store))
    for what, old, new in (("history lookups", h_old, h_new), ("first batch", b_old, b_new)):
        print(
            f"{devices:>6} devices  {what:<16} per-device {old * 1000:8.1f} ms"
            f"  batched {new * 1000:8.1f} ms  ({old / new:5.1f}x)",
            flush=True,
        )


async def main_async(args: argparse.Namespace, work: Path) -> None:
    for devices in args.devices:
        if args.store == "embedded":
            path = work / f"store-{devices}.sqlite"
            await run_and_close(
                (OneByOneEmbedded(path), EmbeddedStorage(path)), work, args, devices
            )
            continue
        with running_influx(work / f"influxd-{devices}", database="bench") as influx:
            stores = (
                OneByOneInflux(influx.url, influx.database, timeout_s=60),
                InfluxStorage(influx.url, influx.database, timeout_s=60),
            )
            await run_and_close(stores, work, args, devices)


async def run_and_close(
    stores: tuple[Storage, Storage], work: Path, args: argparse.Namespace, devices: int
) -> None:
    try:
        await run(stores, work, devices, args.minutes, args.repeat)
    finally:
        for s in stores:
            await s.close()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--devices", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--minutes", type=int, default=30, help="stored history per device")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per path (median)")
    ap.add_argument("--store", choices=("influx", "embedded"), default="influx")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lingtan-bench-history-") as tmp:
        asyncio.run(main_async(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
