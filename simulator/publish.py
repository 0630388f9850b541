"""Async publishing loop: paces simulated time against the wall clock and reports progress."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Protocol
from zoneinfo import ZoneInfo

from simulator.generator import SimMessage
from simulator.truth import NS


class Publisher(Protocol):
    """What the loop needs from a publisher (`collectors.mqtt.GmqttPublisher` fits)."""

    async def connect(self) -> None: ...

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None: ...

    async def drain(self, timeout_s: float = 60.0) -> None: ...

    async def close(self) -> None: ...


class JsonLinesSink:
    """A publisher that writes one JSON line per message instead (dry runs, no broker)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    async def connect(self) -> None:
        return None

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        line: dict[str, object] = {"topic": topic, "qos": qos}
        try:
            line["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:  # Sparkplug's protobuf
            line["payload_b64"] = base64.b64encode(payload).decode("ascii")
        self.out.write(json.dumps(line, ensure_ascii=False) + "\n")

    async def drain(self, timeout_s: float = 60.0) -> None:
        self.out.flush()

    async def close(self) -> None:
        self.out.flush()


@dataclass(slots=True)
class PublishReport:
    """Counts of one publishing run."""

    messages: int = 0
    readings: int = 0
    malformed: int = 0
    sim_ns: int = 0
    wall_s: float = 0.0

    @property
    def rate_msgs_s(self) -> float:
        return self.messages / self.wall_s if self.wall_s > 0 else 0.0


def _fmt_sim(sim_ns: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(sim_ns // NS, tz).isoformat() if sim_ns else "-"


async def _progress(
    report: PublishReport,
    every_s: float,
    out: IO[str],
    tz: ZoneInfo,
    end_ns: int | None,
    start_ns: int | None,
) -> None:
    last_n, last_t = 0, time.monotonic()
    while True:
        await asyncio.sleep(every_s)
        now = time.monotonic()
        rate = (report.messages - last_n) / max(now - last_t, 1e-9)
        last_n, last_t = report.messages, now
        done = ""
        if end_ns is not None and start_ns is not None and end_ns > start_ns and report.sim_ns:
            done = f" ({100.0 * (report.sim_ns - start_ns) / (end_ns - start_ns):5.1f} %)"
        out.write(
            f"simulate: sim {_fmt_sim(report.sim_ns, tz)}{done} | sent {report.messages}"
            f" msgs, {report.readings} readings | {rate:,.0f} msg/s\n"
        )
        out.flush()


async def publish_messages(
    messages: Iterable[SimMessage],
    publisher: Publisher,
    *,
    speed: float | None = 1.0,
    qos: int = 1,
    progress_every_s: float | None = 1.0,
    progress_out: IO[str] | None = None,
    tz: ZoneInfo | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    drain_timeout_s: float = 120.0,
) -> PublishReport:
    """Publish `messages` in order; simulated time runs `speed`× the wall clock.

    `speed=None` publishes as fast as the broker acknowledges (the publisher's in-flight
    window is the only brake). The publisher must be connected; it is drained, not closed.
    """
    report = PublishReport()
    out = progress_out or sys.stderr
    zone = tz or ZoneInfo("UTC")
    ticker = None
    if progress_every_s:
        ticker = asyncio.create_task(
            _progress(report, progress_every_s, out, zone, end_ns, start_ns)
        )
    t_wall0 = time.monotonic()
    sim0: int | None = start_ns
    try:
        for n, msg in enumerate(messages):
            if sim0 is None:
                sim0 = msg.sim_ns
            if speed is not None:
                due = t_wall0 + (msg.sim_ns - sim0) / NS / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif n % 500 == 0:
                await asyncio.sleep(0)  # let the progress ticker and gmqtt's reader run
            await publisher.publish(msg.topic, msg.payload, qos=qos)
            report.messages += 1
            report.readings += msg.readings
            report.malformed += msg.malformed is not None
            report.sim_ns = msg.sim_ns
        await publisher.drain(drain_timeout_s)
    finally:
        report.wall_s = time.monotonic() - t_wall0
        if ticker is not None:
            ticker.cancel()
    return report
