"""API benchmark: `/live` at 5,000 devices and `/balance` over a year of 1,000 devices.

    .venv/bin/python bench/api.py                       # full run (starts its own influxd)
    .venv/bin/python bench/api.py --devices 200 --days 30   # quicker

`/live` is measured over real HTTP (uvicorn in a child process, httpx client with concurrent
tasks here) beside a bare FastAPI endpoint returning a constant, same server, same client.
`/balance?every=1d` is measured cold (empty caches: every interval row read from influxd) and
warm (days cached), beside raw InfluxQL queries of the same range.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import statistics
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
from app.config import Settings
from app.http.options import ApiOptions
from app.ledgers import ApiRole, LedgerStore
from app.live.state import LiveState
from app.main import create_app, freeze_startup_heap
from app.registry import parse_registry
from app.registry.models import Registry
from app.storage.influx import InfluxStorage
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
        options=ApiOptions(),
        refresh_today_in_background=False,
    )

    @app.get("/bench/const")
    async def const() -> dict[str, int]:
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


async def _write_year(url: str, db: str, reg: Registry, start: datetime, days: int) -> float:
    storage = InfluxStorage(url, database=db, chunk_lines=20_000, timeout_s=120)
    rng = random.Random(7)
    t0 = time.perf_counter()
    n = 0
    try:
        pending: asyncio.Task[None] | None = None
        for k in range(days):
            lines = _day_lines(reg, to_ns(start + timedelta(days=k)), rng)
            n += len(lines)
            if pending is not None:
                await pending
            pending = asyncio.create_task(storage.write_lines(lines))
            if k % 30 == 29:
                rate = n / (time.perf_counter() - t0)
                print(f"    wrote {k + 1} days, {n:,} rows, {rate:,.0f} rows/s", flush=True)
        if pending is not None:
            await pending
    finally:
        await storage.close()
    return n / (time.perf_counter() - t0)


async def _timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = await fn()
    return time.perf_counter() - t0, out


async def _stream_count(url: str, db: str, q: str) -> int:
    """Run `q` chunked, JSON-decode every chunk and count rows without keeping them (a year
    of 1,000 meters is 35 M rows: holding them would need tens of GB)."""
    import json

    n = 0
    params = {"db": db, "q": q, "epoch": "ns", "chunked": "true", "chunk_size": "10000"}
    async with (
        httpx.AsyncClient(base_url=url, timeout=3600) as client,
        client.stream("GET", "/query", params=params) as resp,
    ):
        resp.raise_for_status()
        buf = b""
        async for data in resp.aiter_bytes():
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    for res in json.loads(line).get("results", []):
                        n += sum(len(s.get("values") or []) for s in res.get("series", []))
    return n


async def bench_balance(url: str, db: str, tmp: Path, n_devices: int, days: int) -> None:
    reg = balance_registry(n_devices)
    start = datetime(2025, 1, 1, tzinfo=reg.parks[0].tz)
    end = start + timedelta(days=days)
    rows = n_devices * 96 * days
    print(f"\n/balance: {n_devices} devices × {days} days of 15-min intervals = {rows:,} rows")
    rate = await _write_year(url, db, reg, start, days)
    print(f"  ingest (bench writer, line protocol): {rate:,.0f} rows/s")

    storage = InfluxStorage(url, database=db, timeout_s=600)
    ledgers = LedgerStore(f"sqlite:///{tmp / 'bal.db'}")
    key = ledgers.create_key(ApiRole.VIEWER, "bench").key
    app = create_app(
        Settings(data_dir=tmp),
        registry=reg,
        storage=storage,
        ledgers=ledgers,
        live=LiveState(reg),
        options=ApiOptions(),
        refresh_today_in_background=False,
    )
    hdr = {"Authorization": f"Bearer {key}"}
    params = {"start": start.isoformat(), "end": end.isoformat(), "every": "1d"}
    s_ns, e_ns = to_ns(start), to_ns(end)
    q_raw = (
        f"SELECT * FROM interval_energy WHERE park = 'bench' AND time >= {s_ns} AND time < {e_ns}"
    )
    q_agg = (
        "SELECT sum(energy_import_kwh), sum(energy_kwh) FROM interval_energy WHERE park = 'bench'"
        f" AND time >= {s_ns} AND time < {e_ns} GROUP BY time(1d, -8h), role"
    )
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b", timeout=900) as c:
            t_agg, series = await _timed(lambda: storage.query(q_agg))
            print(
                f"  raw InfluxQL sum() GROUP BY time(1d), role: {t_agg:7.3f} s "
                f"({sum(len(s.values) for s in series)} rows)"
            )
            t_raw, n_raw = await _timed(lambda: _stream_count(url, db, q_raw))
            print(
                f"  raw InfluxQL SELECT * (all rows, JSON parsed): {t_raw:7.3f} s ({n_raw:,} rows)"
            )

            t_cold, r = await _timed(
                lambda: c.get("/api/v1/parks/bench/balance", params=params, headers=hdr)
            )
            r.raise_for_status()
            print(f"  /balance every=1d cold (read + accounting): {t_cold:7.3f} s")
            warm: list[float] = []
            for _ in range(10):
                dt, r = await _timed(
                    lambda: c.get("/api/v1/parks/bench/balance", params=params, headers=hdr)
                )
                r.raise_for_status()
                warm.append(dt)
            print(
                f"  /balance every=1d warm: p50 {statistics.median(warm) * 1e3:7.1f} ms, "
                f"max {max(warm) * 1e3:7.1f} ms"
            )
            # another window (a different query, same cached days)
            p2 = {
                **params,
                "start": (start + timedelta(days=3, hours=5)).isoformat(),
                "every": "1mo",
            }
            dt2, r = await _timed(
                lambda: c.get("/api/v1/parks/bench/balance", params=p2, headers=hdr)
            )
            r.raise_for_status()
            print(f"  /balance every=1mo, other window (from 03d05h): {dt2 * 1e3:7.1f} ms")
            p3 = {**params, "every": "1h"}
            dt3, r = await _timed(
                lambda: c.get("/api/v1/parks/bench/balance", params=p3, headers=hdr)
            )
            r.raise_for_status()
            print(
                f"  /balance every=1h warm (all intervals recomputed): {dt3:7.3f} s "
                f"({len(r.content) / 1e6:.1f} MB)"
            )
            print(
                f"  ratio cold /balance ÷ raw SELECT *: {t_cold / t_raw:.2f}×; "
                f"warm p50 ÷ raw SELECT *: {statistics.median(warm) / t_raw:.4f}×"
            )
    finally:
        await storage.close()
        ledgers.close()


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
                asyncio.run(bench_balance(influx.url, "lingtan", tmp, args.devices, args.days))


if __name__ == "__main__":
    main()
