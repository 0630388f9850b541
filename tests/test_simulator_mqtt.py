"""Simulator against a real Mosquitto: every message arrives and the decoder accepts it."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app.registry import parse_registry
from app.telemetry.decode import TelemetryDecoder
from collectors.mqtt import GmqttPublisher, GmqttSubscriber, MqttEndpoint
from simulator import GatewayOptions, simulate
from simulator.cli import main as cli_main
from simulator.cli import parse_duration_s
from simulator.gateway import SimStats
from simulator.publish import JsonLinesSink, publish_messages
from tests.fixtures.mosquitto import MosquittoServer

SH = ZoneInfo("Asia/Shanghai")
NS = 10**9
YAML = """
parks:
  - id: demo
    timezone: Asia/Shanghai
    devices:
      - {id: grid-main, role: grid}
      - {id: pv-1, role: pv, max_kw: 1500}
      - {id: wind-1, role: wind, max_kw: 2000}
      - {id: bess-1, role: storage, capacity_kwh: 2000, max_kw: 800}
      - {id: boiler-1, role: heat_fuel, fuel: natural_gas}
      - {id: hp-1, role: heat_pump, max_kw: 500}
      - {id: bldg-a, role: load, included_in: grid-main, max_kw: 600}
"""
REGISTRY = parse_registry(YAML)
START = datetime(2026, 1, 20, 9, 0, tzinfo=SH)


async def collect(
    url: str, expected: int, timeout_s: float, publish: object
) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    done = asyncio.Event()

    async def handler(topic: str, payload: bytes) -> None:
        got.append((topic, payload))
        if len(got) >= expected:
            done.set()

    sub = GmqttSubscriber(MqttEndpoint.parse(url), "lingtan/v1/+/+/telemetry", "sim-test-sub")
    task = asyncio.create_task(sub.run(handler))
    try:
        await asyncio.wait_for(sub.connected.wait(), 10)
        await publish  # type: ignore[misc]
        await asyncio.wait_for(done.wait(), timeout_s)
        await asyncio.sleep(0.3)  # anything beyond the expected count would show up here
    finally:
        await sub.stop()
        await asyncio.wait_for(task, 10)
    return got


@pytest.mark.parametrize("malformed_rate", [0.0, 0.05])
async def test_simulated_hour_arrives_complete_and_decodes(
    mosquitto: MosquittoServer, malformed_rate: float
) -> None:
    options = GatewayOptions(batch=1, offline_per_day=24.0, malformed_rate=malformed_rate)
    stats = SimStats()
    msgs = list(simulate(REGISTRY, "demo", START, timedelta(hours=1), 60, 9, options, stats=stats))
    injected = sum(m.malformed is not None for m in msgs)
    assert (injected > 0) == (malformed_rate > 0)

    async def publish() -> None:
        pub = GmqttPublisher(MqttEndpoint.parse(mosquitto.url), "sim-test-pub", max_inflight=200)
        await pub.connect()
        try:
            report = await publish_messages(msgs, pub, speed=None, progress_every_s=None)
        finally:
            await pub.close()
        assert report.messages == len(msgs)

    got = await collect(mosquitto.url, len(msgs), 30, publish())
    assert Counter(got) == Counter((m.topic, m.payload) for m in msgs)

    decoder = TelemetryDecoder(REGISTRY)
    now_ns = int(START.timestamp()) * NS + 2 * 3600 * NS
    readings = dead = 0
    for topic, payload in got:
        out = decoder.decode(topic, payload, now_ns)
        readings += len(out.readings)
        dead += len(out.deadletters)
    assert dead == injected
    assert readings == stats.readings == 61 * 7


async def test_cli_publishes_to_broker_and_writes_truth(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    parks = tmp_path / "parks.yaml"
    parks.write_text(YAML)
    truth = tmp_path / "truth.json"
    reg_out = tmp_path / "parks.sim.yaml"
    argv = [
        "--parks",
        str(parks),
        "--mqtt-url",
        mosquitto.url,
        "--start",
        "2026-01-20T09:00:00+08:00",
        "--duration",
        "30m",
        "--speed",
        "max",
        "--devices",
        "3",
        "--registry-out",
        str(reg_out),
        "--truth",
        str(truth),
        "--quiet",
        "--client-id",
        "sim-cli-test",
    ]

    async def publish() -> None:
        # the CLI runs its own event loop: run it in a thread next to the subscriber's loop
        assert await asyncio.to_thread(cli_main, argv) == 0

    # 31 readings for each of 7 + 3 devices
    got = await collect(mosquitto.url, 31 * 10, 30, publish())
    assert len(got) == 310
    assert {t.split("/")[3] for t, _ in got} >= {"sim-load-00001", "sim-load-00003"}
    rows = json.loads(truth.read_text())["intervals"]
    assert {r["interval_start"] for r in rows} == {
        "2026-01-20T09:00:00+08:00",
        "2026-01-20T09:15:00+08:00",
    }
    decoder = TelemetryDecoder(parse_registry(reg_out.read_text()))
    now_ns = int(START.timestamp()) * NS + 3600 * NS
    assert all(not decoder.decode(t, p, now_ns).deadletters for t, p in got)


async def test_speed_paces_simulated_time() -> None:
    msgs = simulate(REGISTRY, "demo", START, timedelta(hours=1), 300, 0)
    out = io.StringIO()
    t0 = time.monotonic()
    # 1 h simulated at 3600× is 1 s of wall time (the last readings are due at +1 s)
    report = await publish_messages(
        msgs, JsonLinesSink(out), speed=3600.0, progress_every_s=0.25, progress_out=io.StringIO()
    )
    elapsed = time.monotonic() - t0
    assert 0.95 <= elapsed < 3.0
    assert report.messages == 13 * 7 == len(out.getvalue().splitlines())


def test_cli_help_and_parsing(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_duration_s("90") == 90.0
    assert parse_duration_s("15m") == 900.0
    assert parse_duration_s("1h30m") == 5400.0
    assert parse_duration_s("7d") == 7 * 86400.0
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--speed max" in text and "--truth" in text


def test_cli_dry_run_to_file(tmp_path: Path) -> None:
    parks = tmp_path / "parks.yaml"
    parks.write_text(YAML)
    out = tmp_path / "msgs.jsonl"
    code = cli_main(
        [
            "--parks",
            str(parks),
            "--start",
            "2026-07-01",
            "--duration",
            "10m",
            "--step",
            "5m",
            "--speed",
            "max",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 3 * 7
    first = json.loads(lines[0]["payload"])
    assert first["ts"] == "2026-07-01T00:00:00+08:00"  # a naive date is the park's midnight
    assert cli_main(["--parks", str(parks), "--park", "nope", "--out", str(out)]) == 2
    assert cli_main(["--parks", str(parks), "--step", "7s", "--out", str(out)]) == 2
