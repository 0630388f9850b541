"""`lingtan up` as a real process on each broker fallback and both stores: serves, shuts down
cleanly on SIGTERM, and keeps every reading across a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.storage.embedded import EmbeddedStorage
from collectors.mqtt import GmqttPublisher, MqttEndpoint, MQTTv50, MQTTv311
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer, free_port

PARK = "p1"
PARKS_YAML = f"""
parks:
  - id: {PARK}
    name: Up test park
    timezone: Asia/Shanghai
    grid_region: northeast
    devices:
      - {{id: grid-main, role: grid, max_kw: 5000}}
      - {{id: pv-1, role: pv, max_kw: 1000}}
      - {{id: bldg-a, role: load, included_in: grid-main, max_kw: 2000}}
"""
NS = 10**9
STARTUP_RE = re.compile(
    r"^lingtan up: .* · broker: (?P<broker>.+?) · storage: (?P<storage>.+?)(?: · |$)"
)
VENV_BIN = str(Path(sys.executable).parent)
STOP_WITHIN_S = 10.0


# --- the process --------------------------------------------------------------------------


@dataclass
class Started:
    broker: str  # the start-up line's broker description
    storage: str
    mqtt_url: str
    line: str


class UpProcess:
    """One `python -m lingtan up` child; its output goes to a file (never a pipe)."""

    def __init__(self, workdir: Path, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.env = env
        self.args = args
        self.api = f"http://127.0.0.1:{env['LINGTAN_API_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "up-0.log"
        self.runs = 0

    def start(self) -> None:
        self.log = self.workdir / f"up-{self.runs}.log"
        self.runs += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lingtan", "up", *self.args],
                env=self.env,
                cwd=self.workdir,  # no stray .env / lingtan.toml from the repo
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def ready(self, timeout_s: float = 30.0) -> Started:
        """Wait for the start-up line and a healthy /healthz."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        started: Started | None = None
        async with httpx.AsyncClient(base_url=self.api, timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"lingtan up exited with {self.proc.returncode}:\n{self.output()}")
                if started is None:
                    started = _startup_line(self.output())
                if started is not None:
                    try:
                        r = await client.get("/healthz")
                        if r.status_code == 200:
                            assert r.json() == {"status": "ok", "storage": "ok"}
                            return started
                    except httpx.TransportError:
                        pass
                if time.monotonic() > deadline:
                    pytest.fail(f"lingtan up not ready in {timeout_s} s:\n{self.output()[-4000:]}")
                await asyncio.sleep(0.05)

    def children(self) -> list[int]:
        """Direct child processes (e.g. the Mosquitto it started)."""
        assert self.proc is not None
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return pids

    async def sigterm(self) -> tuple[int, float]:
        """SIGTERM; returns the exit code and how long the shutdown took."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None and time.monotonic() - began < STOP_WITHIN_S + 5:
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - began
        if self.proc.poll() is None:
            self.kill()
            pytest.fail(f"lingtan up still running {elapsed:.1f} s after SIGTERM:\n{self.output()}")
        assert "Traceback" not in self.output(), self.output()[-4000:]
        return self.proc.returncode, elapsed

    def kill(self) -> None:
        """Clean-up after a failed test: stop it and anything it started, by pid."""
        if self.proc is None or self.proc.poll() is not None:
            return
        kids = self.children()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _startup_line(output: str) -> Started | None:
    for line in output.splitlines():
        m = STARTUP_RE.match(line)
        if m:
            url = re.search(r"mqtt://[^\s)]+", m["broker"])
            assert url, line
            return Started(m["broker"], m["storage"], url.group(0), line)
    return None


@pytest.fixture
def up_processes() -> Iterator[list[UpProcess]]:
    procs: list[UpProcess] = []
    yield procs
    for p in procs:
        p.kill()


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINGTAN_")}
    parks = tmp / "parks.yaml"
    if not parks.exists():
        parks.write_text(PARKS_YAML)
    env.update(
        LINGTAN_DATA_DIR=str(tmp / "data"),
        LINGTAN_API_PORT=str(free_port()),
        LINGTAN_METRICS_PORT="0",
        LINGTAN_PARKS=str(parks),
    )
    env.update(extra)
    return env


def _no_mosquitto(env: dict[str, str]) -> dict[str, str]:
    """No broker configured and none installed: PATH without mosquitto, /usr/sbin disabled."""
    return {**env, "PATH": VENV_BIN, "LINGTAN_NO_SYSTEM_MOSQUITTO": "1"}


# --- telemetry ----------------------------------------------------------------------------


def _minute(base_s: int, k: int) -> dict[str, dict[str, float]]:
    """Minute `k` of the three meters: counters rise steadily, powers change every minute."""
    return {
        "grid-main": {
            "ts": base_s + 60 * k,
            "energy_import_kwh": 1000.0 + 2 * k,
            "energy_export_kwh": 50.0,
            "power_kw": 100.0 + k,
        },
        "pv-1": {"ts": base_s + 60 * k, "energy_kwh": 500.0 + k, "power_kw": 50.0 + 0.5 * k},
        "bldg-a": {
            "ts": base_s + 60 * k,
            "energy_import_kwh": 2000.0 + 3 * k,
            "power_kw": 150.0 + 1.5 * k,
        },
    }


def _power_by_role(k: int) -> dict[str, float]:
    """What /live must show after minute `k` (see `_minute`)."""
    return {"grid": 100.0 + k, "load": 150.0 + 1.5 * k, "pv": 50.0 + 0.5 * k}


async def _publish(url: str, version: int, base_s: int, minutes: range) -> set[tuple[str, int]]:
    """One message per meter and minute, QoS 1, acknowledged by the broker on return."""
    pub = GmqttPublisher(MqttEndpoint.parse(url), mqtt_version=version)
    await pub.connect()
    sent: set[tuple[str, int]] = set()
    try:
        for k in minutes:
            for device, body in _minute(base_s, k).items():
                topic = f"lingtan/v1/{PARK}/{device}/telemetry"
                await pub.publish(topic, json.dumps(body).encode(), qos=1)
                sent.add((device, int(body["ts"]) * NS))
        await pub.drain()
    finally:
        await pub.close()
    return sent


async def _wait_live(api: str, expected: dict[str, float], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    doc: Any = None
    async with httpx.AsyncClient(base_url=api, timeout=2.0) as client:
        while time.monotonic() < deadline:
            # no key: loopback reads. The latest power of each device as received: readings
            # replayed minutes late are stale by their 1-minute cadence (docs/live-page.md),
            # so they are not in the live sums
            r = await client.get(f"/api/v1/parks/{PARK}/live", params={"detail": "1"})
            assert r.status_code == 200, r.text
            doc = r.json()
            if {d["role"]: d.get("power_kw") for d in doc["devices"]} == expected:
                return doc
            await asyncio.sleep(0.1)
    pytest.fail(f"/live never showed {expected}; last: {doc and doc['devices']}")


async def _stored_embedded(data_dir: Path) -> list[tuple[str, int, dict[str, float]]]:
    store = EmbeddedStorage(data_dir / "lingtan-store.sqlite")
    try:
        rows = await store.readings(PARK, 0, 2**62)
    finally:
        await store.close()
    return [(r.device, r.ts_ns, r.values) for r in rows]


def _stored_influx(influx: InfluxServer) -> list[tuple[str, int, dict[str, float]]]:
    rows = influx.points(f"SELECT * FROM reading WHERE park='{PARK}'")
    fields = ("energy_import_kwh", "energy_export_kwh", "energy_kwh", "power_kw")
    return [
        (r["device"], r["time"], {f: r[f] for f in fields if r.get(f) is not None}) for r in rows
    ]


# --- tests --------------------------------------------------------------------------------

BROKERS = {
    # case: (start-up line's broker description starts with, MQTT version for publishers)
    "configured": ("configured broker mqtt://", MQTTv50),
    "mosquitto": ("Mosquitto started by lingtan at mqtt://", MQTTv50),
    "embedded": ("embedded amqtt broker at mqtt://", MQTTv311),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("broker", "store"),
    [
        ("configured", "embedded"),
        ("mosquitto", "embedded"),
        ("embedded", "embedded"),
        ("configured", "influx"),
    ],
)
async def test_up_serves_stops_cleanly_and_keeps_every_reading(
    broker: str,
    store: str,
    tmp_path: Path,
    up_processes: list[UpProcess],
    request: pytest.FixtureRequest,
) -> None:
    env = _env(tmp_path)
    ext: MosquittoServer | None = None
    influx: InfluxServer | None = None
    if broker == "configured":
        ext = request.getfixturevalue("mosquitto")
        env["LINGTAN_MQTT_URL"] = ext.url
    elif broker == "embedded":
        env = _no_mosquitto(env)
    else:
        assert shutil.which("mosquitto", path=env["PATH"]) or Path("/usr/sbin/mosquitto").exists()
    if store == "influx":
        influx = request.getfixturevalue("fresh_influx_db")
        env["LINGTAN_INFLUX_URL"] = influx.url
        env["LINGTAN_INFLUX_DB"] = influx.database
    described, version = BROKERS[broker]
    up = UpProcess(tmp_path, env)
    up_processes.append(up)
    base_s = int(time.time()) - 600  # ten minutes ago: fresh for /live, never in the future

    up.start()
    started = await up.ready()
    assert started.broker.startswith(described), started.line
    assert started.storage.startswith("InfluxDB" if influx else "embedded store"), started.line
    if ext is not None:
        assert started.mqtt_url == ext.url
    kids = up.children()
    # only the Mosquitto fallback starts a broker process
    assert len(kids) == (1 if broker == "mosquitto" else 0), kids

    # A: published, then visible live (so the collector has them)
    sent = await _publish(started.mqtt_url, version, base_s, range(0, 5))
    doc = await _wait_live(up.api, _power_by_role(4))
    assert [d["ts"] is not None for d in doc["devices"]] == [True, True, True]
    # B: acknowledged by the broker, SIGTERM at once: must still be stored
    sent |= await _publish(started.mqtt_url, version, base_s, range(5, 8))
    code, took = await up.sigterm()
    assert code == 0, up.output()
    assert took < STOP_WITHIN_S, f"shutdown took {took:.1f} s"
    assert "lingtan up stopped cleanly" in up.output()
    for pid in kids:  # the broker it started is stopped with it
        assert not Path(f"/proc/{pid}").exists(), f"mosquitto {pid} outlived lingtan up"
    if broker != "configured":
        endpoint = MqttEndpoint.parse(started.mqtt_url)
        with pytest.raises(OSError):  # nothing listens on the started broker's port any more
            await asyncio.open_connection(endpoint.host, endpoint.port)

    # C: while it is down the configured broker keeps the collector's session; a started
    # broker comes back with the process (Mosquitto: persisted; port may differ)
    if ext is not None:
        sent |= await _publish(ext.url, version, base_s, range(8, 10))
    up.start()
    restarted = await up.ready()
    if ext is None:
        sent |= await _publish(restarted.mqtt_url, version, base_s, range(8, 10))
    await _wait_live(up.api, _power_by_role(9))
    code, took = await up.sigterm()
    assert code == 0 and took < STOP_WITHIN_S, up.output()

    stored = _stored_influx(influx) if influx else await _stored_embedded(tmp_path / "data")
    counts = Counter((device, ts) for device, ts, _ in stored)
    assert set(counts) == sent, f"missing {sent - set(counts)}, unexpected {set(counts) - sent}"
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]
    assert len(stored) == 3 * 10
    for device, ts, values in stored:
        k = (ts // NS - base_s) // 60
        want = {q: v for q, v in _minute(base_s, k)[device].items() if q != "ts"}
        assert values == want, (device, k)


@pytest.mark.timeout(60)
async def test_up_demo_on_the_embedded_defaults_is_live_within_seconds(
    tmp_path: Path, up_processes: list[UpProcess]
) -> None:
    env = _no_mosquitto(_env(tmp_path))
    # no registry anywhere (not even ./parks.yaml in the working dir): the bundled demo park
    del env["LINGTAN_PARKS"]
    (tmp_path / "parks.yaml").unlink()
    up = UpProcess(tmp_path, env, ("--demo",))
    up_processes.append(up)
    began = time.monotonic()
    up.start()
    started = await up.ready()
    assert started.broker.startswith("embedded amqtt broker"), started.line
    assert started.storage.startswith("embedded store"), started.line
    assert "demo park simulated" in started.line
    assert (tmp_path / "data" / "demo-parks.yaml").exists()

    roles = {"grid", "pv", "wind", "green_direct", "storage"}
    doc: Any = None
    async with httpx.AsyncClient(base_url=up.api, timeout=2.0) as client:
        while time.monotonic() - began < 20:
            r = await client.get("/api/v1/parks/shenfu-demo/live")
            assert r.status_code == 200, r.text
            doc = r.json()
            if roles <= set(doc["power_kw"]):
                break
            await asyncio.sleep(0.2)
    assert doc is not None and roles <= set(doc["power_kw"]), f"not live after 20 s: {doc}"
    live_after = time.monotonic() - began
    assert live_after < 20
    # the simulated park balances: load = import − export + renewables + green line ± storage
    assert doc["load_kw"] > 0
    code, took = await up.sigterm()
    assert code == 0 and took < STOP_WITHIN_S, up.output()[-4000:]
