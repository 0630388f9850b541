"""Benchmark of the collector's memory: RSS over a simulated day of one-a-minute readings.

Each run is a fresh process holding a `Collector` as `lingtan collect` builds it (registry of
N load meters in parks of 1,000, an embedded store, the spool) and feeding its interval
engine and SoC tracker what a flush feeds them: every device's reading of each minute, in
batches of 5,000 (the collector's default batch), timestamps a minute apart as fast as the
process can. Storage writes are left out (in-order readings never ask storage for history;
written rows do not stay in the collector's memory), so a simulated day takes minutes.

RSS (VmRSS) is sampled at the start (registry loaded, nothing fed: the baseline) and every
simulated hour. Beside the compact engine (the collector's default) the same run measures
the previous behaviour (the engine holding the 48-hour lookback window,
`compact_engine=False`) for its first hours. `--repeat N` runs each configuration N times,
each in a fresh process, and prints the curve as median [min-max] per simulated hour.

    .venv/bin/python bench/collector_memory.py --devices 10000 50000 --hours 24 --old-hours 3
    .venv/bin/python bench/collector_memory.py --devices 10000 --hours 3 --old-hours 2 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

S = 1_000_000_000
T0 = 1_780_000_000 * S - (1_780_000_000 * S) % (3600 * S)  # on the hour
BATCH = 5000
PER_PARK = 1000


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def registry_yaml(n: int) -> str:
    parks = []
    for p in range((n + PER_PARK - 1) // PER_PARK):
        devices = "".join(
            f"      - {{id: m{i}, role: load}}\n"
            for i in range(p * PER_PARK, min(n, (p + 1) * PER_PARK))
        )
        parks.append(f"  - id: p{p}\n    timezone: Asia/Shanghai\n    devices:\n{devices}")
    return "parks:\n" + "".join(parks)


async def child(n: int, hours: int, compact: bool) -> None:
    """One measured process: prints one JSON line per sample."""
    from app.registry import parse_registry
    from app.storage import EmbeddedStorage
    from app.storage.spool import DurableWriter
    from app.telemetry.models import Reading
    from collectors.pipeline import Collector

    registry = parse_registry(registry_yaml(n))
    with tempfile.TemporaryDirectory() as tmp:
        storage = EmbeddedStorage(Path(tmp) / "store.sqlite")
        writer = DurableWriter(storage, Path(tmp) / "spool.sqlite")
        collector = Collector(registry, writer, storage, compact_engine=compact)
        devices = [(park.id, d.id) for park in registry.parks for d in park.devices]
        print(json.dumps({"hour": 0, "rss": rss_mib(), "s": 0.0}), flush=True)
        started = time.perf_counter()
        batch: list[Reading] = []
        for minute in range(1, hours * 60 + 1):
            ts = T0 + minute * 60 * S
            kwh = float(minute)  # 60 kW: one kWh a minute
            for park, device in devices:
                batch.append(Reading(park, device, ts, {"energy_import_kwh": kwh}))
                if len(batch) == BATCH:
                    collector.soc.add(batch)
                    collector.engine.add(batch)
                    batch = []
            if minute % 60 == 0:
                if batch:
                    collector.soc.add(batch)
                    collector.engine.add(batch)
                    batch = []
                elapsed = time.perf_counter() - started
                print(
                    json.dumps({"hour": minute // 60, "rss": rss_mib(), "s": elapsed}), flush=True
                )
        await writer.close()
        await storage.close()


def measure(n: int, hours: int, compact: bool) -> dict[int, tuple[float, float]]:
    """{hour: (RSS MiB, seconds since feeding started)} of a fresh child process."""
    cmd = [sys.executable, __file__, "--child", str(n), str(hours), "1" if compact else "0"]
    out: dict[int, tuple[float, float]] = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            row = json.loads(line)
            out[row["hour"]] = (row["rss"], row["s"])
            label = "compact" if compact else "48-h window"
            print(f"  {label} {n}: hour {row['hour']:2d} {row['rss']:8.1f} MiB", file=sys.stderr)
    if proc.returncode:
        raise SystemExit(f"child failed: {cmd}")
    return out


Curve = dict[int, list[tuple[float, float]]]  # hour -> [(RSS MiB, feed s)] of each run


def curve(n: int, hours: int, compact: bool, repeat: int) -> Curve:
    out: Curve = {}
    for _ in range(repeat):
        for hour, sample in measure(n, hours, compact).items():
            out.setdefault(hour, []).append(sample)
    return out


def cell(samples: list[tuple[float, float]] | None, width: int) -> str:
    """`median [min-max]` of the RSS samples (just the value for a single run)."""
    if not samples:
        return f"{'':>{width}}"
    rss = sorted(r for r, _ in samples)
    text = f"{statistics.median(rss):.1f}"
    if len(rss) > 1:
        text += f" [{rss[0]:.1f}-{rss[-1]:.1f}]"
    return f"{text:>{width}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--old-hours", type=int, default=3, help="hours of the previous engine")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each configuration")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, hours, compact = args.child
        asyncio.run(child(int(n), int(hours), compact == "1"))
        return
    for n in args.devices:
        new = curve(n, args.hours, compact=True, repeat=args.repeat)
        old = curve(n, args.old_hours, compact=False, repeat=args.repeat) if args.old_hours else {}
        runs = f"median [min-max] of {args.repeat} runs" if args.repeat > 1 else "one run"
        print(f"\n{n:,} devices, one reading a minute each (RSS MiB, {runs})")
        print(f"{'simulated hour':>15} {'compact':>24} {'48-h window (before)':>24} {'feed s':>7}")
        for hour in sorted(new):
            feed = statistics.median(s for _, s in new[hour])
            print(f"{hour:>15} {cell(new[hour], 24)} {cell(old.get(hour), 24)} {feed:7.0f}")
        median = {h: statistics.median(r for r, _ in v) for h, v in new.items()}
        fed = [r for h, r in median.items() if h >= 1]
        print(f"baseline (registry loaded, nothing fed): {median[0]:.1f} MiB")
        if fed:
            print(
                f"compact: peak {max(r for v in new.values() for r, _ in v):.1f} MiB; "
                f"medians from hour 1 on: {min(fed):.1f}-{max(fed):.1f} MiB"
            )
        if len(old) > 1:
            last = max(old)
            per_hour = (
                statistics.median(r for r, _ in old[last]) - statistics.median(r for r, _ in old[0])
            ) / last
            print(f"48-h window: {per_hour:+.1f} MiB per simulated hour (median runs)")


if __name__ == "__main__":
    main()
