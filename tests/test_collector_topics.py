"""Topic routing: which format reads a topic; a topic no format reads is a bad_topic dead letter."""

from __future__ import annotations

import asyncio

import pytest

from app.telemetry.formats import GatewayDecoder
from app.telemetry.models import RejectReason
from collectors.pipeline import Collector
from collectors.topics import SUBSCRIPTIONS
from tests.ingest_support import T0_NS, topic
from tests.test_collector_acks import REGISTRY, FakeWriter, RecordingAcker, reading


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("lingtan/v1/p1/m0/status", RejectReason.BAD_TOPIC),
        ("lingtan/", RejectReason.BAD_TOPIC),
        ("other/x", RejectReason.BAD_TOPIC),
        ("Lingtan/v1/p1/m0/telemetry", RejectReason.BAD_TOPIC),
        ("", RejectReason.BAD_TOPIC),
    ],
)
def test_a_topic_no_format_reads_is_a_bad_topic(name: str, reason: RejectReason) -> None:
    got = GatewayDecoder(REGISTRY).decode(name, b"{}", T0_NS)
    assert not got.readings
    assert [d.reason for d in got.deadletters] == [reason]


def test_everything_under_lingtan_is_subscribed() -> None:
    assert SUBSCRIPTIONS == ("lingtan/#",)
    assert "lingtan/#" in GatewayDecoder(REGISTRY).filters().shared


async def test_an_unrouted_topic_is_dead_lettered_with_its_raw_bytes_and_acked() -> None:
    writer = FakeWriter()
    c = Collector(REGISTRY, writer, None, batch_max_wait_s=0.0, clock_ns=lambda: T0_NS)  # type: ignore[arg-type]
    acker = RecordingAcker()
    c.submit("other/g/NDATA/n", b"\x00\x01proto", acker, 1)
    c.submit("lingtan/v1/p1/m0/status", b"online", acker, 2)
    c.submit(topic("m0"), reading(1), acker, 3)
    c.start()
    await asyncio.wait_for(c.stop(), 5)
    assert acker.acked == [1, 2, 3]
    dls = [d for b in writer.batches for d in b.deadletters]
    assert [(d.topic, d.reason, d.raw, d.park) for d in dls] == [
        ("other/g/NDATA/n", RejectReason.BAD_TOPIC, b"\x00\x01proto", None),
        ("lingtan/v1/p1/m0/status", RejectReason.BAD_TOPIC, b"online", None),
    ]
    assert [r.device for b in writer.batches for r in b.readings] == ["m0"]
    assert c.metrics.rejected.labels("bad_topic")._value.get() == 2
