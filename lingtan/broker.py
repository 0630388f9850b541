"""Which MQTT broker `lingtan up` uses: configured, the machine's Mosquitto, or an embedded one."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from collectors.mqtt import MQTTv50, MQTTv311
from lingtan.ports import broker_port

log = logging.getLogger(__name__)

#: amqtt's measured delivery rate on a 2-core machine (Mosquitto: ~78k msgs/s).
AMQTT_LIMIT = "about 3,000 messages/s at QoS 0 (Mosquitto delivers about 78,000)"

#: `LINGTAN_NO_SYSTEM_MOSQUITTO=1`: never start the machine's Mosquitto, go straight to the
#: embedded broker (a Mosquitto installed for something else, or tests of the last fallback;
#: `/usr/sbin/mosquitto` is found even when it is not on PATH, so PATH alone cannot hide it)
NO_SYSTEM_MOSQUITTO_ENV = "LINGTAN_NO_SYSTEM_MOSQUITTO"


@dataclass(frozen=True)
class BrokerChoice:
    """The broker in use and how clients must speak to it."""

    url: str
    kind: str  # "configured" | "mosquitto" | "embedded"
    mqtt_version: int = MQTTv50
    #: why a started broker is not on 1883, with the port to publish to ("" when on 1883)
    note: str = ""

    def describe(self) -> str:
        note = f" ({self.note})" if self.note else ""
        if self.kind == "embedded":
            return f"embedded amqtt broker at {self.url}{note} (MQTT 3.1.1; limit {AMQTT_LIMIT})"
        if self.kind == "mosquitto":
            return f"Mosquitto started by lingtan at {self.url}{note}"
        return f"configured broker {self.url}"


async def _wait_port(port: int, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise RuntimeError(f"broker did not listen on 127.0.0.1:{port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


def _mosquitto_conf(data_dir: Path, port: int) -> Path:
    broker_dir = data_dir / "mosquitto"
    broker_dir.mkdir(parents=True, exist_ok=True)
    conf = broker_dir / "mosquitto.conf"
    # loopback only and anonymous: this broker serves the single machine `lingtan up` runs on;
    # queue sizing, crash durability and message size as in the shipped
    # mosquitto/mosquitto.conf (see its comments and docs/broker.md)
    conf.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {broker_dir}/",
                "autosave_interval 1",
                "max_queued_messages 1000000",
                "max_inflight_messages 1000",
                "message_size_limit 4194304",
                # as root Mosquitto would switch to user "mosquitto" and lose the data dir
                f"user {getpass.getuser()}",
                f"log_dest file {broker_dir}/mosquitto.log",
                "",
            ]
        )
    )
    return conf


def system_mosquitto() -> str | None:
    """The machine's `mosquitto` binary, unless absent or disabled by the environment."""
    if os.environ.get(NO_SYSTEM_MOSQUITTO_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        return None
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


@contextlib.asynccontextmanager
async def broker_for(mqtt_url: str | None, data_dir: Path) -> AsyncIterator[BrokerChoice]:
    """Yield the broker to use, starting (and later stopping) one when none is configured.

    Order: `mqtt_url`; else the machine's Mosquitto (see `system_mosquitto`, disabled by
    `LINGTAN_NO_SYSTEM_MOSQUITTO=1`); else an embedded amqtt broker (MQTT 3.1.1).
    """
    if mqtt_url:
        yield BrokerChoice(mqtt_url, "configured")
        return
    mosquitto = system_mosquitto()
    if mosquitto:
        port, note = broker_port()
        conf = _mosquitto_conf(data_dir, port)
        # own session: a Ctrl-C in the terminal reaches lingtan, which stops the broker last
        proc = subprocess.Popen(
            [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, start_new_session=True
        )
        try:
            await _wait_port(port)
            yield BrokerChoice(f"mqtt://127.0.0.1:{port}", "mosquitto", note=note)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        return
    from amqtt.broker import Broker

    port, note = broker_port()
    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}})
    await broker.start()
    try:
        yield BrokerChoice(f"mqtt://127.0.0.1:{port}", "embedded", MQTTv311, note)
    finally:
        await broker.shutdown()
