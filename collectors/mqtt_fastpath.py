"""The collector's QoS 1 fast path through gmqtt's private internals (measured: 50k → 270k
msgs/s, docs/performance.md): PUBLISH packets go straight to a batch sink, PUBACKs out in
batches. Tested against gmqtt 0.8.0 (pinned in pyproject.toml); on any other gmqtt whose
internals differ, `install_fast_path` leaves the client alone and gmqtt's stock path runs.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any, Protocol

from gmqtt.mqtt.constants import MQTTv50

log = logging.getLogger(__name__)

#: The private method of gmqtt's package handler the fast path replaces; its absence means
#: another gmqtt, whose internals this module does not know.
QOS1_HANDLER = "_handle_qos_1_publish_packet"

_PUBACK = 0x40
# what gmqtt's CommandWithMidPacket builds: MQTT 5 with reason code 0 and no properties
_PUBACK_V5 = struct.Struct("!BBHBB")
_PUBACK_V311 = struct.Struct("!BBH")


class PubackSender:
    """Acknowledges QoS 1 messages received on one MQTT connection, many PUBACKs per write.

    A message id only means something on the connection it arrived on: once that connection
    is gone the broker redelivers the message (persistent session) under a new id, possibly
    reusing this one for another message, so acks for a lost connection are dropped.
    """

    __slots__ = ("_connection", "_handler", "_v5")

    def __init__(self, handler: Any, connection: Any, mqtt_version: int) -> None:
        self._handler = handler  # gmqtt's package handler: knows the current connection
        self._connection = connection
        self._v5 = mqtt_version >= MQTTv50

    @property
    def connection(self) -> Any:
        return self._connection

    def ack(self, mids: Sequence[int]) -> None:
        """PUBACK these message ids (in this order) if their connection is still the live one."""
        conn = self._connection
        if not mids or self._handler._connection is not conn or conn.is_closing():
            return
        if self._v5:
            pack5 = _PUBACK_V5.pack
            data = b"".join([pack5(_PUBACK, 4, mid, 0, 0) for mid in mids])
        else:
            pack3 = _PUBACK_V311.pack
            data = b"".join([pack3(_PUBACK, 2, mid) for mid in mids])
        conn.send_package(data)  # one write (and syscall) for the whole batch


class BatchSink(Protocol):
    """Takes QoS 1 messages synchronously and acks them later; other QoS levels via `handle`."""

    def submit(self, topic: str, payload: bytes, acker: PubackSender, mid: int) -> None:
        """Take a QoS 1 message; call `acker.ack([..., mid, ...])` once it is durable."""
        ...

    async def handle(self, topic: str, payload: bytes) -> None:
        """Take a QoS 0/2 message; return once it is durable (gmqtt acks QoS 2 then)."""
        ...


def install_fast_path(client: Any, sink: BatchSink) -> bool:
    """Route `client`'s QoS 1 PUBLISHes straight to `sink.submit`, skipping gmqtt's task and
    ack per message; False (and the stock path) when gmqtt's internals are not the known ones."""
    handler: Any = getattr(client, "_package_handler", None)
    if not callable(getattr(handler, QOS1_HANDLER, None)) or not callable(
        getattr(handler, "_handle_publish_packet", None)
    ):
        # another gmqtt inside: the stock path (a task per message, `sink.handle`) is right
        log.warning("gmqtt internals changed: QoS 1 messages take the slow path")
        return False
    acker: PubackSender | None = None
    v5 = False

    def current_acker() -> PubackSender:
        nonlocal acker, v5
        conn = handler._connection
        if acker is None or acker.connection is not conn:
            version = conn._protocol.proto_ver
            acker, v5 = PubackSender(handler, conn, version), version >= MQTTv50
        return acker

    # replaces MqttPackageHandler._handle_qos_1_publish_packet (gmqtt has parsed topic,
    # id and properties by now) for this client only
    def on_qos1(mid: int, payload: bytes, topic: str | bytes, _props: Any) -> None:
        if not isinstance(topic, str):
            topic = topic.decode("utf-8", "replace")
        sink.submit(topic, payload, current_acker(), mid)

    gmqtt_publish = handler._handle_publish_packet

    # and _handle_publish_packet for the plain case: QoS 1, UTF-8 topic, no properties
    # (gmqtt builds format strings, a properties dict and a debug line for each message)
    def on_publish(cmd: int, raw: bytes) -> None:
        if cmd & 0x06 != 0x02:  # QoS 0 or 2
            return gmqtt_publish(cmd, raw)  # type: ignore[no-any-return]
        acker = current_acker()
        end = 2 + int.from_bytes(raw[:2], "big")
        start = end + 2
        if v5:
            if raw[start : start + 1] != b"\x00":  # properties (a topic alias, ...)
                return gmqtt_publish(cmd, raw)  # type: ignore[no-any-return]
            start += 1
        if end == 2 or len(raw) < start:
            return gmqtt_publish(cmd, raw)  # type: ignore[no-any-return]
        try:
            topic = raw[2:end].decode("utf-8")
        except UnicodeDecodeError:
            return gmqtt_publish(cmd, raw)  # type: ignore[no-any-return]
        sink.submit(topic, raw[start:], acker, int.from_bytes(raw[end : end + 2], "big"))
        return None

    setattr(handler, QOS1_HANDLER, on_qos1)
    handler._handle_publish_packet = on_publish
    return True
