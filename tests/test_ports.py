"""Busy ports, held for real: `lingtan up`/`api` explain a taken API port, and `lingtan up`
says why its broker left 1883 and which port to publish to (mosquitto_pub -p works on it)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lingtan.ports import MQTT_PORT, PortInUse, bind_api_socket, broker_port
from tests.fixtures.mosquitto import free_port
from tests.test_up import PARK, UpProcess, _env


@contextlib.contextmanager
def held(port: int) -> Iterator[socket.socket | None]:
    """A listening socket on 127.0.0.1:`port`; None when something else already listens
    there (busy either way)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError as exc:
        s.close()
        assert exc.errno == errno.EADDRINUSE, exc
        yield None
        return
    s.listen()
    try:
        yield s
    finally:
        s.close()


def test_bind_api_socket_names_the_port_and_the_setting() -> None:
    port = free_port()
    with held(port), pytest.raises(PortInUse) as caught:
        bind_api_socket("127.0.0.1", port)
    msg = str(caught.value)
    assert msg == (
        f"port {port} on 127.0.0.1 is in use (another lingtan, or another program):"
        " set LINGTAN_API_PORT or pass --api-port"
    )
    sock = bind_api_socket("127.0.0.1", port)  # released: binds
    sock.close()


def test_broker_port_leaves_a_busy_1883_and_says_where_to() -> None:
    with held(MQTT_PORT):
        port, note = broker_port()
    assert port != MQTT_PORT
    assert note == (
        f"port 1883 is in use, so it listens on {port}:"
        f" gateways and mosquitto_pub connect with -p {port}"
    )


@pytest.mark.parametrize("command", ["up", "api"])
def test_busy_api_port_gives_a_clear_message(command: str, tmp_path: Path) -> None:
    env = _env(tmp_path)
    port = int(env["LINGTAN_API_PORT"])
    with held(port):
        proc = subprocess.run(
            [sys.executable, "-m", "lingtan", command],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert (
        f"lingtan: port {port} on 127.0.0.1 is in use (another lingtan, or another program):"
        " set LINGTAN_API_PORT or pass --api-port"
    ) in proc.stderr
    assert "Errno" not in out and "Traceback" not in out, out
    assert not (tmp_path / "data" / "mosquitto").exists()  # stopped before starting a broker


@pytest.mark.timeout(90)
async def test_up_moves_off_busy_1883_says_why_and_mosquitto_pub_reaches_it(
    tmp_path: Path,
) -> None:
    up = UpProcess(tmp_path, _env(tmp_path))
    with held(MQTT_PORT):
        try:
            await _up_on_another_port(up)
        finally:
            up.kill()


async def _up_on_another_port(up: UpProcess) -> None:
    """Start `lingtan up` while 1883 is busy, publish with mosquitto_pub to the port it printed."""
    up.start()
    started = await up.ready()
    m = re.fullmatch(
        r"Mosquitto started by lingtan at mqtt://127\.0\.0\.1:(\d+) \(port 1883 is in use,"
        r" so it listens on (\d+): gateways and mosquitto_pub connect with -p (\d+)\)",
        started.broker,
    )
    assert m, started.line
    port = int(m[1])
    assert port != MQTT_PORT and m[2] == m[3] == str(port)

    # the README's example, with the port printed
    body = {"ts": int(time.time()), "energy_import_kwh": 100.0, "power_kw": 123.5}
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "1",
            "-t",
            f"lingtan/v1/{PARK}/grid-main/telemetry",
            "-m",
            json.dumps(body),
        ],
        check=True,
        timeout=15,
    )
    deadline = time.monotonic() + 15
    power: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=up.api, timeout=2.0) as client:
        while time.monotonic() < deadline and power.get("grid") != 123.5:
            power = (await client.get(f"/api/v1/parks/{PARK}/live")).json()["power_kw"]
            await asyncio.sleep(0.1)
    assert power.get("grid") == 123.5, power
    code, _ = await up.sigterm()
    assert code == 0
