"""`lingtan collect --workers N` as a real process: load split, stored once, stops cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from app.config import Settings
from lingtan.workers import orphaned_spools, plan_workers
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer, free_port
from tests.ingest_support import N_METERS, T0_S, publish_all, topic, wait_for, write_parks


def test_plan_derives_ids_group_and_ports() -> None:
    plans = plan_workers(Settings(client_id="site-a", collect_workers=3, metrics_port=9200))
    assert [p.client_id for p in plans] == ["site-a-1", "site-a-2", "site-a-3"]
    assert {p.share_group for p in plans} == {"site-a"}  # defaulted to the client id
    assert [p.metrics_port for p in plans] == [9200, 9201, 9202]
    off = plan_workers(
        Settings(client_id="x", share_group="fleet", collect_workers=2, metrics_port=0)
    )
    assert [(p.share_group, p.metrics_port) for p in off] == [("fleet", 0), ("fleet", 0)]
    long_id = "c" * 64
    assert all(len(p.client_id) <= 64 for p in plan_workers(Settings(client_id=long_id)))


def test_each_worker_has_its_own_spool_and_gateway_state() -> None:
    paths = [
        (s.spool_path.name, s.gateway_state_path.name)
        for s in (Settings(collect_worker=k) for k in (0, 1, 2))
    ]
    # the first worker keeps the single collector's files, so their backlog is replayed
    assert paths == [
        ("spool.sqlite", "gateway-state.json"),
        ("spool.sqlite", "gateway-state.json"),
        ("spool-2.sqlite", "gateway-state-2.json"),
    ]


def test_spools_of_workers_not_started_are_found(tmp_path: Path) -> None:
    for name in ("spool.sqlite", "spool-2.sqlite", "spool-3.sqlite", "spool-x.sqlite"):
        (tmp_path / name).touch()
    assert [p.name for p in orphaned_spools(tmp_path, 2)] == ["spool-3.sqlite"]
    assert [p.name for p in orphaned_spools(tmp_path, 1)] == ["spool-2.sqlite", "spool-3.sqlite"]
    assert orphaned_spools(tmp_path, 3) == []


def _two_free_ports() -> int:
    while True:
        port = free_port()
        if port < 65535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port


def _start(tmp: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    with (tmp / "collect.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lingtan", "collect", *args],
            env={**os.environ, **env},
            cwd=tmp,  # no stray .env / lingtan.toml from the repo
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _metric(port: int, name: str) -> float:
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return -1.0
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


def _count(influx: InfluxServer) -> int:
    rows = influx.points('SELECT count("power_kw") FROM reading')
    return int(rows[0]["count"]) if rows else 0


def _worker_pids(log: Path) -> list[int]:
    return [int(p) for p in re.findall(r"worker \d+: pid (\d+)", log.read_text())]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too (its parent, the test's child, has not reaped it yet)
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[1][0] != "Z"


def _env(tmp: Path, mosquitto: MosquittoServer, influx: InfluxServer, port: int) -> dict[str, str]:
    return {
        "LINGTAN_MQTT_URL": mosquitto.url,
        "LINGTAN_INFLUX_URL": influx.url,
        "LINGTAN_INFLUX_DB": influx.database,
        "LINGTAN_PARKS": str(write_parks(tmp)),
        "LINGTAN_DATA_DIR": str(tmp / "data"),
        "LINGTAN_METRICS_PORT": str(port),
        "LINGTAN_CLIENT_ID": "fleet",
        "LINGTAN_BATCH_MAX_WAIT_MS": "20",
        "LINGTAN_ROLLUP_INTERVAL_S": "0",
    }


def _messages(first: int, n: int) -> list[tuple[str, object]]:
    return [
        (topic(f"m{k % N_METERS}"), {"ts": T0_S + k, "power_kw": float(k)})
        for k in range(first, first + n)
    ]


async def test_two_workers_split_the_load_store_once_and_stop_cleanly(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    influx = fresh_influx_db
    port = _two_free_ports()
    env = {**_env(tmp_path, mosquitto, influx, port), "LINGTAN_COLLECT_WORKERS": "2"}
    log = tmp_path / "collect.log"
    proc = _start(tmp_path, env)
    ports = (port, port + 1)
    try:
        await wait_for(
            lambda: all(_metric(p, "lingtan_collector_mqtt_connected") == 1.0 for p in ports),
            what="both workers connected",
        )
        n = 2000
        await publish_all(mosquitto.url, _messages(0, n))
        await wait_for(lambda: _count(influx) == n, what="all readings stored")
        # counted once a batch's write returned: a moment after influxd shows it
        await wait_for(
            lambda: sum(_metric(p, "lingtan_collector_readings_total") for p in ports) >= n,
            what="both workers' counters",
        )
        per_worker = [_metric(p, "lingtan_collector_readings_total") for p in ports]
        # each message went to exactly one worker, and both took a share
        assert sum(per_worker) == n
        assert min(per_worker) > 0, per_worker

        # SIGTERM mid-stream: both workers stop, each acks only what it made durable
        async def paced() -> None:
            # a gateway fleet publishing steadily, so the stop lands in the middle of the stream
            second = _messages(n, n)
            for k in range(0, n, 100):
                await publish_all(mosquitto.url, second[k : k + 100])
                await asyncio.sleep(0.05)

        publisher = asyncio.create_task(paced())
        await wait_for(lambda: _count(influx) > n + 100, what="the second batch under way")
        workers = _worker_pids(log)
        assert len(workers) == 2
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()[-3000:]
        assert not any(_alive(pid) for pid in workers)
        assert _count(influx) < 2 * n, "the stop must land mid-stream"
        await publisher  # the broker queues the rest for the workers' persistent sessions
        proc = _start(tmp_path, env)
        await wait_for(
            lambda: all(_metric(p, "lingtan_collector_mqtt_connected") == 1.0 for p in ports),
            what="both workers back",
        )
        await wait_for(lambda: _count(influx) == 2 * n, timeout_s=60, what="every reading")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert sorted(p.name for p in (tmp_path / "data").glob("spool*.sqlite")) == [
        "spool-2.sqlite",
        "spool.sqlite",
    ]


async def test_a_worker_that_dies_stops_the_unit_with_an_error(
    mosquitto: MosquittoServer, fresh_influx_db: InfluxServer, tmp_path: Path
) -> None:
    port = _two_free_ports()
    env = _env(tmp_path, mosquitto, fresh_influx_db, port)
    log = tmp_path / "collect.log"
    proc = _start(tmp_path, env, "--workers", "2")
    try:
        await wait_for(
            lambda: all(
                _metric(p, "lingtan_collector_mqtt_connected") == 1.0 for p in (port, port + 1)
            ),
            what="both workers connected",
        )
        first, second = _worker_pids(log)
        os.kill(second, signal.SIGKILL)
        assert await asyncio.to_thread(proc.wait, 30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not _alive(first)
    assert "worker 2 exited unexpectedly" in log.read_text()
