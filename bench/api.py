"""API benchmark: `/live` at 5,000 devices and `/balance` over a year of 1,000 devices.

    .venv/bin/python bench/api.py                       # full run (starts its own influxd)
    .venv/bin/python bench/api.py --devices 200 --days 30   # quicker

`/live` is measured over real HTTP (uvicorn in a child process, httpx client with concurrent
tasks here) beside a bare FastAPI endpoint returning a constant, same server, same client.
`/balance` of the whole range is measured on InfluxDB and on the embedded store: cold (the
first query of a fresh app: every day read and computed; app start-up reported apart) and warm
(random other windows), beside the store's own per-day, per-role aggregate of the same range.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.accounting.buckets import to_ns
from app.auth.deps import Viewer
from app.balance.rollup_builder import RollupBuilder
from app.config import Settings
from app.intervals.models import IntervalEnergy
from app.ledgers import ApiRole, LedgerStore
from app.live.state import LiveState
from app.main import create_app, freeze_startup_heap
from app.registry import parse_registry
from app.registry.models import Registry
from app.storage.base import Storage, WriteBatch
from app.storage.embedded import EmbeddedStorage
from app.storage.influx import InfluxStorage, change_marker_lines
from app.telemetry.models import Reading
from tests.fixtures.influx import free_port, running_influx

S = 1_000_000_000
Q_NS = 900 * S


def live_registry(n: int) -> Registry:
    roles = ["pv"] * 30 + ["load"] * 60 + ["ev_charger"] * 8 + ["wind"] * 2
    lines = [
        "parks:",
        "  - id: big",
        "    timezone: Asia/Shanghai",
        "    grid_region: northeast",
        "    devices:",
        "      - {id: grid-main, role: grid}",
        "      - {id: bess-1, role: storage, capacity_kwh: 4000}",
    ]
    lines += [f"      - {{id: d{i:05d}, role: {roles[i % len(roles)]}}}" for i in range(n - 2)]
    return parse_registry("\n".join(lines))


def balance_registry(n: int) -> Registry:
    lines = [
        "parks:",
        "  - id: bench",
        "    timezone: Asia/Shanghai",
        "    grid_region: northeast",
        "    interval_minutes: 15",
        "    devices:",
        "      - {id: grid-main, role: grid}",
        "      - {id: bess-1, role: storage, capacity_kwh: 4000}",
    ]
    for i in range(n - 2):
        role = "pv" if i % 5 == 0 else "load"
        lines.append(f"      - {{id: d{i:05d}, role: {role}}}")
    return parse_registry("\n".join(lines))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


# --- /live ------------------------------------------------------------------------------


def _live_server(port: int, n_devices: int, influx_url: str, db_path: str, key_q: Any) -> None:
    import uvicorn

    reg = live_registry(n_devices)
    ledgers = LedgerStore(f"sqlite:///{db_path}")
    key = ledgers.create_key(ApiRole.VIEWER, "bench").key
    live = LiveState(reg)
    storage = InfluxStorage(influx_url, database="lingtan")
    app = create_app(
        Settings(data_dir=Path(db_path).parent),
        registry=reg,
        storage=storage,
        ledgers=ledgers,
        live=live,
        refresh_today_in_background=False,
    )

    @app.get("/bench/const")
    async def const() -> dict[str, int]:
        return {"ok": 1}

    @app.get("/bench/authed")
    async def authed(_: Viewer) -> dict[str, int]:
        # the same API-key check as /live, then a constant: what /live adds beyond auth
        return {"ok": 1}

    park = reg.parks[0]
    rng = random.Random(1)

    def batch(devs: list[str]) -> list[Reading]:
        now = time.time_ns()
        return [
            Reading("big", d, now, {"power_kw": rng.uniform(-50, 200), "soc_pct": 50.0})
            for d in devs
        ]

    live.apply(batch([d.id for d in park.devices]))

    async def feed() -> None:
        # a gateway per device every 60 s → ~n/60 readings a second, each batch a new version
        ids = [d.id for d in park.devices]
        k = 0
        step = max(1, len(ids) // 60)
        while True:
            live.apply(batch(ids[k : k + step]))
            k = (k + step) % len(ids)
            await asyncio.sleep(1.0)

    async def main() -> None:
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        task = asyncio.create_task(feed())
        renderer = asyncio.create_task(live.render_loop())  # what the app's lifespan runs
        freeze_startup_heap()  # as `serve` does
        key_q.put(key)
        await server.serve()
        task.cancel()
        renderer.cancel()

    asyncio.run(main())


def _wrk(url: str, headers: dict[str, str], clients: int, seconds: int) -> dict[str, float]:
    """One `wrk` run (a C client, one thread, `clients` keep-alive connections): req/s and
    the latency percentiles it prints with --latency, in ms."""
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    got: dict[str, float] = {}
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    for line in out.splitlines():
        m = re.match(r"\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)$", line)
        if m:
            got[f"p{m.group(1)}"] = float(m.group(2)) * units[m.group(3)]
        m = re.match(r"Requests/sec:\s+([\d.]+)", line)
        if m:
            got["rps"] = float(m.group(1))
        if "Non-2xx" in line:
            raise RuntimeError(f"wrk saw errors: {line.strip()}")
    return got


def _wrk_rounds(base: str, key: str, clients: int, rounds: int) -> None:
    """/live beside a bare endpoint doing the same API-key check, both driven by wrk."""
    hdr = {"Authorization": f"Bearer {key}"}
    print(f"  wrk (C client, {clients} connections, 10 s a round), {rounds} rounds:")
    res: dict[str, list[dict[str, float]]] = {"bare + same auth": [], "/live": []}
    for rnd in range(rounds):
        for name, path in (
            ("bare + same auth", "/bench/authed"),
            ("/live", "/api/v1/parks/big/live"),
        ):
            r = _wrk(base + path, hdr, clients, 10)
            res[name].append(r)
            print(
                f"    round {rnd + 1} {name:17s} p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms"
                f"  {r['rps']:8.0f} req/s"
            )
    for name, rs in res.items():
        p50, p99, rps = _med(rs, "p50"), _med(rs, "p99"), _med(rs, "rps", 0)
        print(f"    {name:17s} p50 {p50}  p99 {p99}  req/s {rps}")


def _med(rs: list[dict[str, float]], k: str, digits: int = 2) -> str:
    xs = [r[k] for r in rs]
    return f"{statistics.median(xs):.{digits}f} ({min(xs):.{digits}f}–{max(xs):.{digits}f})"


async def _loop_lag(n_devices: int, seconds: float) -> list[float]:
    """Event-loop lag (ms) seen by a 1-ms ticker while the live state is fed and the render
    loop keeps a 5,000-device document current: the most /live machinery can add to any
    request, measured without HTTP or client noise."""
    reg = live_registry(n_devices)
    live = LiveState(reg)
    ids = [d.id for d in reg.parks[0].devices]
    live.apply([Reading("big", d, time.time_ns(), {"power_kw": 1.0}) for d in ids])
    await live.document_json_async("big")
    renderer = asyncio.create_task(live.render_loop())
    freeze_startup_heap()
    lags: list[float] = []
    t_end = time.perf_counter() + seconds
    k = 0
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - t0 - 0.001) * 1e3)
        k += 1
        if k % 1000 == 0:  # ~1 s: a batch of readings, and a client asking
            step = max(1, len(ids) // 60)
            live.apply([Reading("big", d, time.time_ns(), {"power_kw": 2.0}) for d in ids[:step]])
            await live.document_json_async("big")
    renderer.cancel()
    return lags


async def _hammer(
    base: str, path: str, headers: dict[str, str], clients: int, per_client: int
) -> tuple[list[float], float]:
    lat: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        for _ in range(20):  # warm-up
            (await client.get(path, headers=headers)).raise_for_status()

        async def worker() -> None:
            for _ in range(per_client):
                t0 = time.perf_counter()
                r = await client.get(path, headers=headers)
                lat.append(time.perf_counter() - t0)
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return lat, wall


def bench_live(
    influx_url: str, tmp: Path, n_devices: int, clients: int, requests: int, rounds: int
) -> None:
    port = free_port()
    ctx = mp.get_context("spawn")
    key_q = ctx.Queue()
    proc = ctx.Process(
        target=_live_server,
        args=(port, n_devices, influx_url, str(tmp / "live.db"), key_q),
        daemon=True,
    )
    proc.start()
    try:
        key = key_q.get(timeout=60)
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(base + "/bench/const", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        per = max(1, requests // clients)
        size = len(
            httpx.get(
                base + "/api/v1/parks/big/live", headers={"Authorization": f"Bearer {key}"}
            ).content
        )
        print(
            f"\n/live: {n_devices} devices, document {size / 1024:.0f} KiB, "
            f"{clients} concurrent clients × {per} requests (client in another process)"
        )
        results: dict[str, list[float]] = {"bare constant": [], "/live": []}
        live_hdr = {"Authorization": f"Bearer {key}"}
        for rnd in range(rounds):
            for name, path, headers in (
                ("bare constant", "/bench/const", {}),
                ("/live", "/api/v1/parks/big/live", live_hdr),
            ):
                lat, wall = asyncio.run(_hammer(base, path, headers, clients, per))
                results[name].extend(lat)
                print(
                    f"  round {rnd + 1} {name:14s} p50 {pct(lat, 50) * 1e3:6.2f} ms"
                    f"  p99 {pct(lat, 99) * 1e3:6.2f} ms  {len(lat) / wall:7.0f} req/s"
                )
        for name, lat in results.items():
            print(
                f"  all rounds {name:14s} p50 {pct(lat, 50) * 1e3:6.2f} ms"
                f"  p99 {pct(lat, 99) * 1e3:6.2f} ms  (n={len(lat)})"
            )
        if shutil.which("wrk"):
            _wrk_rounds(base, key, clients, rounds)
        else:
            print("  wrk not installed (apt install wrk): C-client latency skipped")
        lags = asyncio.run(_loop_lag(n_devices, 10.0))
        print(
            f"  event-loop lag with render loop + feed (in-process, 10 s): p50"
            f" {pct(lags, 50):.2f} ms, p99 {pct(lags, 99):.2f} ms, max {max(lags):.2f} ms"
        )
        lb, ll = results["bare constant"], results["/live"]
        print(
            f"  ratio /live ÷ bare: p50 {pct(ll, 50) / pct(lb, 50):.2f}×, "
            f"p99 {pct(ll, 99) / pct(lb, 99):.2f}×"
        )
    finally:
        proc.terminate()
        proc.join(10)


# --- /balance ---------------------------------------------------------------------------


def _day_lines(reg: Registry, day_start_ns: int, rng: random.Random) -> list[str]:
    park = reg.parks[0]
    out: list[str] = []
    tail = ',estimated=false,flags="",duration_s=900 '
    for q in range(96):
        ts = day_start_ns + q * Q_NS
        hour = (q // 4 + 8) % 24  # local hour (UTC+8)
        sun = max(0.0, 1 - abs(hour - 12.5) / 6)
        for d in park.devices:
            pre = f"interval_energy,device={d.id},park=bench,role={d.role.value} "
            if d.role.value == "grid":
                f = f"energy_import_kwh={200 + 50 * rng.random():.3f},energy_export_kwh=0"
            elif d.role.value == "pv":
                f = f"energy_kwh={2.5 * sun * rng.random():.3f}"
            elif d.role.value == "storage":
                c = 100.0 if 10 <= hour < 14 else 0.0
                s = 90.0 if 18 <= hour < 22 else 0.0
                f = f"energy_charge_kwh={c},energy_discharge_kwh={s}"
            else:
                f = f"energy_import_kwh={rng.random():.3f}"
            out.append(pre + f + tail + str(ts))
    return out


def _day_rows(reg: Registry, day_start_ns: int, rng: random.Random) -> list[IntervalEnergy]:
    """The same day as `_day_lines`, as rows for the embedded store."""
    park = reg.parks[0]
    out: list[IntervalEnergy] = []
    for q in range(96):
        ts = day_start_ns + q * Q_NS
        hour = (q // 4 + 8) % 24
        sun = max(0.0, 1 - abs(hour - 12.5) / 6)
        for d in park.devices:
            role = d.role.value
            if role == "grid":
                v = {"energy_import_kwh": 200 + 50 * rng.random(), "energy_export_kwh": 0.0}
            elif role == "pv":
                v = {"energy_kwh": 2.5 * sun * rng.random()}
            elif role == "storage":
                v = {
                    "energy_charge_kwh": 100.0 if 10 <= hour < 14 else 0.0,
                    "energy_discharge_kwh": 90.0 if 18 <= hour < 22 else 0.0,
                }
            else:
                v = {"energy_import_kwh": rng.random()}
            out.append(IntervalEnergy("bench", d.id, role, ts, ts + Q_NS, v))
    return out


async def _write_year(storage: Storage, reg: Registry, start: datetime, days: int) -> float:
    """Write `days` days of every device's intervals; rows/s. On InfluxDB as line protocol
    (fast), with the change markers a collector's writes carry; elsewhere through `write`."""
    rng = random.Random(7)
    t0 = time.perf_counter()
    n = 0
    pending: asyncio.Future[None] | None = None
    for k in range(days):
        day_ns = to_ns(start + timedelta(days=k))
        if isinstance(storage, InfluxStorage):
            lines = _day_lines(reg, day_ns, rng)
            n += len(lines)
            marker = IntervalEnergy("bench", "grid-main", "grid", day_ns, day_ns + Q_NS, {})
            job = storage.write_lines(lines + change_marker_lines([marker]))
        else:
            rows = _day_rows(reg, day_ns, rng)
            n += len(rows)
            job = storage.write(WriteBatch(intervals=rows))
        if pending is not None:
            await pending
        pending = asyncio.ensure_future(job)
        if k % 30 == 29:
            rate = n / (time.perf_counter() - t0)
            print(f"    wrote {k + 1} days, {n:,} rows, {rate:,.0f} rows/s", flush=True)
    if pending is not None:
        await pending
    return n / (time.perf_counter() - t0)


async def _timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = await fn()
    return time.perf_counter() - t0, out


async def _baseline(storage: Storage, s_ns: int, e_ns: int) -> tuple[str, float]:
    """The store's own per-day, per-role sum of the same range: comparable work to a cold
    `/balance` (which sums by role in the store, then runs the accounting per day)."""
    if isinstance(storage, InfluxStorage):
        q = (
            "SELECT sum(energy_import_kwh), sum(energy_export_kwh), sum(energy_kwh),"
            " count(duration_s) FROM interval_energy WHERE park = 'bench'"
            f" AND time >= {s_ns} AND time < {e_ns} GROUP BY time(1d, -8h), role"
        )
        t, _ = await _timed(lambda: storage.query(q))
        return "influxd sum() GROUP BY time(1d), role", t
    assert isinstance(storage, EmbeddedStorage)
    sql = (
        "SELECT (start_ns + 28800000000000) / 86400000000000 AS day, role,"
        " sum(energy_import_kwh), sum(energy_export_kwh), sum(energy_kwh), sum(rows)"
        " FROM interval_role_total WHERE park = 'bench' AND start_ns >= ? AND start_ns < ?"
        " GROUP BY day, role"
    )

    def run() -> int:
        with sqlite3.connect(storage.path) as db:
            return len(db.execute(sql, (s_ns, e_ns)).fetchall())

    t, _ = await _timed(lambda: asyncio.to_thread(run))
    return "SQLite sum() GROUP BY day, role on the rollup", t


async def _drop_chain_days(storage: Storage) -> None:
    """Forget the stored chained days (the day totals stay): the next app computes its chain
    from the totals, as the first process after a bulk import or a factor-set change does."""
    if isinstance(storage, InfluxStorage):
        await storage.query_many(['DELETE FROM day_rollup WHERE "kind" =~ /^chain:/'])
        return
    assert isinstance(storage, EmbeddedStorage)

    def run() -> None:
        with sqlite3.connect(storage.path) as db:
            db.execute("DELETE FROM day_rollup WHERE kind LIKE 'chain:%'")

    await asyncio.to_thread(run)


async def bench_balance(
    backend: str, storage: Storage, tmp: Path, n_devices: int, days: int
) -> None:
    reg = balance_registry(n_devices)
    park = reg.parks[0]
    start = datetime(2025, 1, 1, tzinfo=park.tz)
    end = start + timedelta(days=days)
    rows = n_devices * 96 * days
    print(f"\n/balance on {backend}: {n_devices} devices × {days} days = {rows:,} interval rows")
    rate = await _write_year(storage, reg, start, days)
    print(f"  ingest (bench writer): {rate:,.0f} rows/s")
    ledgers = LedgerStore(f"sqlite:///{tmp / f'bal-{backend}.db'}")
    key = ledgers.create_key(ApiRole.VIEWER, "bench").key
    hdr = {"Authorization": f"Bearer {key}"}
    params = {"start": start.isoformat(), "end": end.isoformat(), "every": "1d"}
    rng = random.Random(11)
    try:
        bases = []
        for _ in range(3):
            name, t = await _baseline(storage, to_ns(start), to_ns(end))
            bases.append(t)
        t_base = statistics.median(bases)
        print(f"  baseline, {name}: {_stats(bases)}")
        # What the collector does as days settle (and `lingtan rollups` after a bulk import):
        # the day totals of every marked day, once.
        builder = RollupBuilder(storage, lambda: reg.parks)
        t0 = time.perf_counter()
        inputs, stale = await builder.stale_days(park)
        await builder.build(park, stale, inputs)
        t_build = time.perf_counter() - t0
        print(
            f"  day totals built for {len(stale)} days (collector / `lingtan rollups`, once):"
            f" {t_build:.1f} s, {t_build / max(1, len(stale)) * 1e3:.0f} ms a day"
        )
        results: dict[str, list[float]] = {
            "first": [],
            "fresh": [],
            "eval": [],
            "warm": [],
            "warm_year": [],
            "warm_eval": [],
        }
        for k in range(3):
            await _drop_chain_days(storage)
            for kind in ("first", "fresh"):
                # a fresh app is a fresh process's state: nothing in memory
                t_start, app = await _timed(lambda: _app(reg, storage, ledgers, tmp))
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://b", timeout=900
                ) as c:

                    async def get(url: str, p: dict[str, str]) -> float:
                        dt, r = await _timed(lambda: c.get(url, params=p, headers=hdr))
                        r.raise_for_status()
                        return float(dt)

                    bal = "/api/v1/parks/bench/balance"
                    ev = "/api/v1/parks/bench/evaluation"
                    results[kind].append(await get(bal, params))
                    print(
                        f"  run {k + 1} {kind}: app start-up (apart) {t_start * 1e3:.1f} ms,"
                        f" cold whole range {results[kind][-1] * 1e3:.1f} ms",
                        flush=True,
                    )
                    if kind == "first":
                        continue
                    results["eval"].append(await get(ev, {"year": "2025"}))
                    # warm: another window each time (repeating one query would flatter)
                    for _ in range(10):
                        a = rng.randrange(0, max(1, days - 1))
                        b = rng.randrange(a + 1, days + 1)
                        p = {
                            "start": (start + timedelta(days=a)).isoformat(),
                            "end": (start + timedelta(days=b)).isoformat(),
                            "every": rng.choice(["1d", "1mo"]),
                        }
                        results["warm"].append(await get(bal, p))
                    results["warm_year"].append(await get(bal, params))
                    results["warm_eval"].append(await get(ev, {"year": "2025"}))
                    if k == 2:
                        day_h = {
                            **params,
                            "end": (start + timedelta(days=1)).isoformat(),
                            "every": "1h",
                        }
                        t_hour = await get(bal, day_h)
        print(
            "  /balance whole range every=1d, cold, first process (chain computed from the day"
            f" totals): {_stats(results['first'])}"
            f"  ({statistics.median(results['first']) / t_base:.2f}× the baseline)"
        )
        print(
            "  /balance whole range every=1d, cold, a later fresh process (chain from the"
            f" store): {_stats(results['fresh'])}"
            f"  ({statistics.median(results['fresh']) / t_base:.2f}× the baseline)"
        )
        print(f"  /evaluation year=2025 after that cold query: {_stats(results['eval'])}")
        print(f"  /balance warm, 30 random windows (1d/1mo): {_stats(results['warm'])}")
        print(f"  /balance whole range every=1d, warm: {_stats(results['warm_year'])}")
        print(f"  /evaluation year=2025, warm: {_stats(results['warm_eval'])}")
        print(f"  /balance one day every=1h, warm: {t_hour * 1e3:.1f} ms")
    finally:
        ledgers.close()


def _stats(xs: list[float]) -> str:
    """median (min–max) in ms."""
    return (
        f"median {statistics.median(xs) * 1e3:.1f} ms"
        f" (min {min(xs) * 1e3:.1f}, max {max(xs) * 1e3:.1f}, n={len(xs)})"
    )


async def _app(reg: Registry, storage: Storage, ledgers: LedgerStore, tmp: Path) -> Any:
    return create_app(
        Settings(data_dir=tmp),
        registry=reg,
        storage=storage,
        ledgers=ledgers,
        live=LiveState(reg),
        refresh_today_in_background=False,
    )


async def _balance_on(backend: str, url: str, tmp: Path, devices: int, days: int) -> None:
    storage: Storage
    if backend == "influxdb":
        storage = InfluxStorage(url, database=f"bal{devices}", chunk_lines=20_000, timeout_s=900)
        await storage.ensure_database()
    else:
        storage = EmbeddedStorage(tmp / "store.db", synchronous="NORMAL")
    try:
        await bench_balance(backend, storage, tmp, devices, days)
    finally:
        await storage.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--live-devices", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--skip-balance", action="store_true")
    ap.add_argument(
        "--stores", nargs="+", choices=["influxdb", "embedded"], default=["influxdb", "embedded"]
    )
    args = ap.parse_args()
    print(f"bench/api.py  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="lingtan-bench-") as d:
        tmp = Path(d)
        with running_influx(tmp / "influxd") as influx:
            if not args.skip_live:
                bench_live(
                    influx.url, tmp, args.live_devices, args.clients, args.requests, args.rounds
                )
            if not args.skip_balance:
                for backend in args.stores:
                    asyncio.run(_balance_on(backend, influx.url, tmp, args.devices, args.days))


if __name__ == "__main__":
    main()
