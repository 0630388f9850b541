"""Batched acknowledgement: a submitted message is acked once durable, in order, never before."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from gmqtt.mqtt.constants import MQTTCommands
from gmqtt.mqtt.package import CommandWithMidPacket

from app.registry import parse_registry
from app.storage.base import WriteBatch
from collectors import mqtt_fastpath
from collectors.mqtt import GmqttSubscriber, MqttEndpoint, MQTTv50, MQTTv311, PubackSender
from collectors.mqtt_fastpath import install_fast_path
from collectors.pipeline import Collector
from tests.fixtures.mosquitto import MosquittoServer
from tests.ingest_support import PARKS_YAML, T0_NS, T0_S, publish_all, topic, wait_for

REGISTRY = parse_registry(PARKS_YAML)


class FakeWriter:
    """Stands in for DurableWriter: records batches, or fails while `fail` is set."""

    def __init__(self) -> None:
        self.batches: list[WriteBatch] = []
        self.fail = False
        self.spooled_batches = 0
        self.replayed_batches = 0
        self.spool_depth = 0
        self.spool_bytes = 0

    async def write(self, batch: WriteBatch) -> None:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.batches.append(batch)


class RecordingAcker:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, mids: Sequence[int]) -> None:
        self.acked.extend(mids)


def reading(minute: int) -> bytes:
    return json.dumps({"ts": T0_S + 60 * minute, "energy_import_kwh": float(minute)}).encode()


def make_collector(writer: FakeWriter, failures: list[int]) -> Collector:
    return Collector(
        REGISTRY,
        writer,  # type: ignore[arg-type]
        None,
        batch_max_wait_s=0.0,
        clock_ns=lambda: T0_NS + 10**15,
        on_failure=lambda: failures.append(1),
    )


async def test_submitted_messages_are_acked_in_order_only_after_their_batch_is_written() -> None:
    writer = FakeWriter()
    c = make_collector(writer, [])
    acker = RecordingAcker()
    for mid in (7, 3, 9):
        c.submit(topic("m0"), reading(mid), acker, mid)
    c.submit(topic("ghost"), b"{}", acker, 11)  # a dead letter is durable too, then acked
    assert acker.acked == []  # nothing is durable yet
    c.start()
    waiter = asyncio.create_task(c.handle(topic("m1"), reading(1)))
    await asyncio.wait_for(waiter, 5)
    await c.stop()
    assert acker.acked == [7, 3, 9, 11]
    stored = [r for b in writer.batches for r in b.readings]
    assert [(r.device, r.ts_ns) for r in stored] == [
        ("m0", T0_NS + 60 * 7 * 10**9),
        ("m0", T0_NS + 60 * 3 * 10**9),
        ("m0", T0_NS + 60 * 9 * 10**9),
        ("m1", T0_NS + 60 * 10**9),
    ]
    assert sum(len(b.deadletters) for b in writer.batches) == 1


async def test_a_batch_that_fails_is_never_acked() -> None:
    writer = FakeWriter()
    writer.fail = True
    failures: list[int] = []
    c = make_collector(writer, failures)
    acker = RecordingAcker()
    c.submit(topic("m0"), reading(0), acker, 1)
    c.start()
    with pytest.raises(OSError):
        await asyncio.wait_for(c.handle(topic("m0"), reading(1)), 5)
    assert acker.acked == [] and failures  # one failure per batch that could not be written
    writer.fail = False
    c.submit(topic("m0"), reading(2), acker, 2)  # e.g. redelivered after the reconnect
    await c.stop()
    assert acker.acked == [2]


class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def send_package(self, data: bytes) -> None:
        self.sent.append(data)


class FakeHandler:
    def __init__(self, connection: Any) -> None:
        self._connection = connection


@pytest.mark.parametrize("version", [MQTTv50, MQTTv311])
def test_puback_sender_writes_what_gmqtt_would_in_one_go(version: int) -> None:
    conn = FakeConnection()
    sender = PubackSender(FakeHandler(conn), conn, version)
    sender.ack([1, 65535, 300])
    expected = b"".join(
        CommandWithMidPacket.build_package(MQTTCommands.PUBACK, mid, False, proto_ver=version)
        for mid in (1, 65535, 300)
    )
    assert conn.sent == [expected]


def test_puback_sender_drops_acks_of_a_connection_that_is_gone() -> None:
    # after a reconnect the broker redelivers under new ids: an old id may name another message
    old, new = FakeConnection(), FakeConnection()
    handler = FakeHandler(old)
    sender = PubackSender(handler, old, MQTTv50)
    handler._connection = new
    sender.ack([1])
    old.closing = True
    handler._connection = old
    sender.ack([2])
    assert old.sent == [] and new.sent == []


class RecordingSink:
    def __init__(self) -> None:
        self.submitted: list[tuple[str, bytes, int]] = []
        self.handled: list[tuple[str, bytes]] = []

    def submit(self, topic: str, payload: bytes, acker: PubackSender, mid: int) -> None:
        self.submitted.append((topic, payload, mid))

    async def handle(self, topic: str, payload: bytes) -> None:
        self.handled.append((topic, payload))


def publish_packet(
    topic: str, payload: bytes, mid: int, props: bytes | None, qos: int = 1
) -> bytes:
    """The variable header + payload of a PUBLISH (what gmqtt's handler is given)."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name
    if qos:
        body += mid.to_bytes(2, "big")
    if props is not None:  # MQTT 5: property length, then properties
        body += bytes([len(props)]) + props
    return body + payload


@pytest.mark.parametrize("version", [MQTTv50, MQTTv311])
async def test_publish_packets_reach_the_sink_with_their_ids(version: int) -> None:
    sub = GmqttSubscriber(MqttEndpoint(), "lingtan/v1/+/+/telemetry", "t")
    sink = RecordingSink()
    client = sub._make_client(sink.handle, asyncio.Event())  # as run_batched does
    assert install_fast_path(client, sink)
    conn = FakeConnection()
    conn._protocol = SimpleNamespace(proto_ver=version)  # type: ignore[attr-defined]
    handler = client._package_handler
    handler._connection = conn
    handler._connection_state.protocol_version = version
    v5 = version == MQTTv50
    t = topic("m0")
    # the plain case (parsed here), one with a property (parsed by gmqtt), then QoS 0
    handler._handle_packet(0x32, publish_packet(t, b'{"a":1}', 513, b"" if v5 else None))
    if v5:
        handler._handle_packet(0x32, publish_packet(t, b"[]", 7, b"\x01\x01"))  # format indicator
    handler._handle_packet(0x30, publish_packet(t, b"{}", 0, b"" if v5 else None, qos=0))
    await asyncio.sleep(0.01)  # gmqtt runs the QoS 0 handler in a task
    assert sink.submitted == [(t, b'{"a":1}', 513), *([(t, b"[]", 7)] if v5 else [])]
    assert sink.handled == [(t, b"{}")]


@pytest.mark.parametrize("fast", [True, False])
async def test_qos1_messages_arrive_on_the_fast_path_or_gmqtts_own(
    mosquitto: MosquittoServer, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    """Through a real broker: with gmqtt's known internals QoS 1 messages reach `submit`;
    when they are not there (another gmqtt: here, a method name it lacks) the fast path
    steps aside and gmqtt's stock path delivers the same messages to `handle`, acked by
    gmqtt."""
    if not fast:
        monkeypatch.setattr(mqtt_fastpath, "QOS1_HANDLER", "_a_method_gmqtt_lacks")
    sink = RecordingSink()
    sub = GmqttSubscriber(
        MqttEndpoint.parse(mosquitto.url), "lingtan/v1/+/+/telemetry", f"fp-{fast}"
    )
    runner = asyncio.create_task(sub.run_batched(sink))
    try:
        await asyncio.wait_for(sub.connected.wait(), 10)
        sent = [(topic(f"m{i}"), f'{{"n":{i}}}'.encode()) for i in range(3)]
        await publish_all(mosquitto.url, sent)  # type: ignore[arg-type]
        await wait_for(lambda: len(sink.submitted) + len(sink.handled) == 3)
    finally:
        await sub.stop()
        await asyncio.wait_for(runner, 10)
    if fast:
        assert [(t, p) for t, p, _mid in sink.submitted] == sent and sink.handled == []
    else:
        assert sink.submitted == [] and sink.handled == sent
