"""The README's production section as written: its broker steps (users, the shipped
mosquitto.conf adapted to the host) give a Mosquitto that lets the gateway publish and the
collector read, and nobody else; deploy/influxdb.conf runs influxd with its data under
./data/influxdb."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.fixtures.influx import INFLUXD
from tests.fixtures.mosquitto import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text("utf-8")


def production_block() -> str:
    section = README.split("## Production shape", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```bash\n(.*?)```", section, re.S)
    assert m, "no bash block in the production section"
    return m[1]


def step(block: str, first: str, stop: str) -> str:
    """The commands from the comment line starting with `first` to the one starting `stop`."""
    lines = block.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next(i for i, line in enumerate(lines) if line.startswith(stop) and i > begin)
    return "\n".join(lines[begin:end])


@contextlib.contextmanager
def running(args: list[str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pub(port: int, user: str, password: str, topic: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-V", "mqttv5"]
        + (["-u", user, "-P", password] if user else [])
        + ["-t", topic, "-m", '{"power_kw": 1.5}'],
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_readme_broker_steps_give_the_shipped_broker_with_users(tmp_path: Path) -> None:
    block = production_block()
    broker_steps = step(block, "# 2.", "# 3.")
    assert "mosquitto/mosquitto.conf" in broker_steps  # the shipped file, not another one
    # the commands run from a deployment directory holding the repository's files
    (tmp_path / "mosquitto").mkdir()
    shutil.copy(ROOT / "mosquitto" / "mosquitto.conf", tmp_path / "mosquitto")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "lingtan").write_text(f'#!/bin/sh\nexec {sys.executable} -m lingtan "$@"\n')
    (venv_bin / "lingtan").chmod(0o755)
    (tmp_path / "data" / "mosquitto").mkdir(parents=True)
    script = broker_steps.replace(" &\n", "\n").replace(
        "mosquitto -c data/mosquitto/mosquitto.conf > data/mosquitto.log 2>&1", ""
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin:/usr/sbin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    collector = re.search(r"mqtt://lingtan-collector:([^@\s]+)@127\.0\.0\.1:1884", done.stdout)
    gateway = re.search(r"password:\s+(\S+)", done.stdout)
    assert collector and gateway, done.stdout
    conf = (tmp_path / "data" / "mosquitto" / "mosquitto.conf").read_text()
    assert "\nlistener 1884 127.0.0.1\n" in conf
    settings = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert not [line for line in settings if " /mosquitto/" in line], settings  # container paths
    # the shipped queue sizing and auth survive the adaptation
    for line in ("max_queued_messages 1000000", "allow_anonymous false", "persistence true"):
        assert f"\n{line}\n" in conf, line

    port = free_port()  # 1884 may be taken on a shared machine: same config on a free port
    conf_file = tmp_path / "data" / "mosquitto" / "mosquitto.conf"
    conf_file.write_text(conf.replace("listener 1884 127.0.0.1", f"listener {port} 127.0.0.1"))
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with running([binary, "-c", str(conf_file)], tmp_path, tmp_path / "data" / "mosquitto.log"):
        wait_port(port)
        topic = "lingtan/v1/shenfu-demo/grid-main/telemetry"
        sub = subprocess.Popen(
            [
                *("mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1"),
                *("-u", "lingtan-collector", "-P", collector[1]),
                *("-t", "lingtan/v1/+/+/telemetry", "-C", "1", "-W", "20", "-v"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(0.5)  # the subscription is in place
            assert _pub(port, "", "", topic).returncode != 0  # anonymous: refused
            other = _pub(port, "gw-shenfu-demo", gateway[1], "lingtan/v1/other-park/x/telemetry")
            # another park's topic: refused (PUBACK "not authorized"; the subscriber below
            # must receive the authorised message first, so nothing of this one got through)
            assert "Not authorized" in other.stderr, other
            ok = _pub(port, "gw-shenfu-demo", gateway[1], topic)
            assert ok.returncode == 0, ok.stderr
            out, _ = sub.communicate(timeout=25)
        finally:
            if sub.poll() is None:
                sub.kill()
        assert out.strip() == f'{topic} {{"power_kw": 1.5}}'
    assert (tmp_path / "data" / "mosquitto" / "mosquitto.db").exists()  # persistence there


def test_deploy_influxdb_conf_keeps_data_under_the_data_dir(tmp_path: Path) -> None:
    conf = (ROOT / "deploy" / "influxdb.conf").read_text()
    assert "influxd run -config deploy/influxdb.conf" in production_block()
    assert (
        'bind-address = "127.0.0.1:8186"' in conf
        and "LINGTAN_INFLUX_URL=http://127.0.0.1:8186" in README
    )
    http, rpc = free_port(), free_port()  # 8186 / 8188 may be taken on a shared machine
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "influxdb.conf").write_text(
        conf.replace("127.0.0.1:8186", f"127.0.0.1:{http}").replace(
            "127.0.0.1:8188", f"127.0.0.1:{rpc}"
        )
    )
    with running(
        [INFLUXD, "run", "-config", "deploy/influxdb.conf"], tmp_path, tmp_path / "influxd.log"
    ):
        wait_port(http, timeout_s=30)
        r = httpx.post(f"http://127.0.0.1:{http}/query", params={"q": "CREATE DATABASE lingtan"})
        assert r.status_code == 200, r.text
        w = httpx.post(
            f"http://127.0.0.1:{http}/write",
            params={"db": "lingtan"},
            content=b"reading,park=p,device=d power_kw=1.5 1700000000000000000",
        )
        assert w.status_code == 204, w.text
    for sub in ("meta", "data", "wal"):
        assert (tmp_path / "data" / "influxdb" / sub).is_dir(), sub
