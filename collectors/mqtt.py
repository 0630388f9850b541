"""MQTT transport behind a small interface: a QoS 1 subscriber that acks when told, a publisher.

gmqtt is used rather than aiomqtt: on our 2-core machine a counting subscriber received
~22k msgs/s at QoS 1 with gmqtt against ~8k with aiomqtt (docs/performance.md), and gmqtt
sends the PUBACK only when an async on_message handler finishes
(`optimistic_acknowledgement=False`), which is exactly "ack after written or spooled".
The collector goes one step further (`run_batched`): QoS 1 messages are handed over without
a task each and their PUBACKs go out together, in order, once the batch is durable; that fast
path reaches into gmqtt's internals and lives apart, in collectors/mqtt_fastpath.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from gmqtt import Client as GmqttClient
from gmqtt import Subscription
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

# the measured fast path through gmqtt's internals, apart (re-exported: the sink interface)
from collectors.mqtt_fastpath import BatchSink, PubackSender, install_fast_path

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Broker address and credentials parsed from `mqtt://user:pass@host:port`."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> MqttEndpoint:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in {"mqtt", "mqtts", "tcp", "ssl"}:
            raise ValueError(f"MQTT URL {url!r}: scheme must be mqtt:// or mqtts://")
        tls = parts.scheme in {"mqtts", "ssl"}
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


class Subscriber(Protocol):
    """Delivers messages to a handler; a message is acknowledged when its handler returns."""

    async def run(self, handler: MessageHandler) -> None: ...

    async def stop(self) -> None: ...


class Backoff:
    """Exponential backoff with jitter for reconnects (0.5 s doubling up to a cap)."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._next = initial_s

    def reset(self) -> None:
        self._next = self.initial_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.max_s, self._next * 2)
        return delay * random.uniform(0.8, 1.2)


class GmqttSubscriber:
    """QoS 1 subscriber with a persistent session; reconnects with backoff.

    With `run`, each message is handed to the handler in its own task; the PUBACK goes out
    when the handler returns. If the handler raises, no PUBACK is sent and the broker
    redelivers the message after the next reconnect (the persistent session keeps it).
    With `run_batched`, QoS 1 messages go to the sink's `submit` without a task, and the sink
    sends their PUBACKs itself, together, once they are durable; the same rules apply.
    """

    def __init__(
        self,
        endpoint: MqttEndpoint,
        topic_filter: str | Sequence[str],
        client_id: str,
        *,
        share_group: str | None = None,
        unshared: Sequence[str] = (),
        qos: int = 1,
        receive_maximum: int = 4096,
        keepalive_s: int = 30,
        on_state: Callable[[bool], None] | None = None,
        persistent: bool = True,
        mqtt_version: int = MQTTv50,
    ) -> None:
        self.endpoint = endpoint
        self.share_group = share_group
        #: filters shared among a share group's collectors, and ones every collector gets
        #: (e.g. Sparkplug BIRTHs); `set_filters` changes them while running
        self.filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        self.unshared = list(unshared)
        self.topic = self._topics()[0]
        self.client_id = client_id
        self.qos = qos
        self.receive_maximum = receive_maximum
        self.keepalive_s = keepalive_s
        self.on_state = on_state
        # persistent: the broker queues for us while we are away (the collector); a live view
        # only wants what happens while it is connected
        self.persistent = persistent
        self.mqtt_version = mqtt_version
        self._stopping = asyncio.Event()
        self._client: Any = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()

    async def run(self, handler: MessageHandler) -> None:
        """Deliver every message to `handler` (one task each); ack when it returns."""
        await self._supervise(handler, None)

    async def run_batched(self, sink: BatchSink) -> None:
        """Deliver QoS 1 messages to `sink.submit` (acked by the sink), others to `sink.handle`."""
        await self._supervise(sink.handle, sink)

    async def _supervise(self, handler: MessageHandler, sink: BatchSink | None) -> None:
        backoff = Backoff()
        # MQTT 5: a retained message only when the subscription is new, not again at every
        # reconnect of a persistent session (a gateway's retained status topic would be
        # dead-lettered once per reconnect); 3.1.1 has no such option (the bits must be 0)
        retained = 1 if self.mqtt_version >= MQTTv50 else 0
        while not self._stopping.is_set():
            lost = self._lost = asyncio.Event()
            client = self._make_client(handler, lost)
            if sink is not None:
                install_fast_path(client, sink)
            try:
                await client.connect(
                    self.endpoint.host,
                    self.endpoint.port,
                    ssl=self.endpoint.tls,
                    keepalive=self.keepalive_s,
                    version=self.mqtt_version,
                )
            except (TimeoutError, OSError, Exception) as exc:
                delay = backoff.next_delay()
                log.warning(
                    "MQTT %s unreachable (%s); retrying in %.1f s",
                    self.endpoint.redacted(),
                    exc,
                    delay,
                )
                with contextlib.suppress(Exception):
                    await client.disconnect()
                await self._sleep(delay)
                continue
            self._client = client
            backoff.reset()
            topics = self._topics()
            client.subscribe(
                [Subscription(t, qos=self.qos, retain_handling_options=retained) for t in topics]
            )
            log.info(
                "subscribed to %s on %s as %s",
                ", ".join(topics),
                self.endpoint.redacted(),
                self.client_id,
            )
            self.connected.set()
            if self.on_state:
                self.on_state(True)
            stop_wait = asyncio.create_task(self._stopping.wait())
            lost_wait = asyncio.create_task(lost.wait())
            await asyncio.wait({stop_wait, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            lost_wait.cancel()
            self.connected.clear()
            if self.on_state:
                self.on_state(False)
            with contextlib.suppress(Exception):
                await client.disconnect()
            self._client = None
            if not self._stopping.is_set():
                delay = backoff.next_delay()
                log.warning("MQTT connection lost; reconnecting in %.1f s", delay)
                await self._sleep(delay)

    def _make_client(self, handler: MessageHandler, lost: asyncio.Event) -> Any:
        props: dict[str, Any] = {}
        if self.mqtt_version == MQTTv50:
            props = {
                "session_expiry_interval": 0xFFFFFFFF if self.persistent else 0,
                "receive_maximum": self.receive_maximum,
            }
        client = GmqttClient(
            self.client_id,
            clean_session=not self.persistent,
            optimistic_acknowledgement=False,
            **props,
        )
        # our own supervisor reconnects (with backoff and a fresh client), not gmqtt's
        client.set_config({"reconnect_retries": 0, "reconnect_delay": 1})
        if self.endpoint.username:
            client.set_auth_credentials(self.endpoint.username, self.endpoint.password)

        async def on_message(_c: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
            await handler(
                topic if isinstance(topic, str) else topic.decode("utf-8", "replace"), payload
            )
            return 0

        def on_disconnect(_c: Any, _packet: Any, _exc: Any = None) -> None:
            lost.set()

        client.on_message = on_message
        client.on_disconnect = on_disconnect
        return client

    def _topics(self) -> list[str]:
        group = self.share_group
        shared = [f"$share/{group}/{f}" if group else f for f in self.filters]
        return shared + [f for f in self.unshared if f not in self.filters or group]

    def set_filters(self, shared: Sequence[str], unshared: Sequence[str] = ()) -> None:
        """Subscribe to these filters from now on (and after every reconnect), dropping others."""
        before = set(self._topics())
        self.filters, self.unshared = list(shared), list(unshared)
        after = self._topics()
        client = self._client
        if client is None:
            return
        retained = 1 if self.mqtt_version >= MQTTv50 else 0
        for topic in after:
            if topic not in before:
                client.subscribe(
                    Subscription(topic, qos=self.qos, retain_handling_options=retained)
                )
        for topic in before - set(after):
            client.unsubscribe(topic)
        log.info("topic filters now %s", ", ".join(after))

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> bool:
        """Publish on the subscriber's own connection (e.g. a Sparkplug rebirth request);
        False when not connected (nothing is queued)."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        client.publish(topic, payload, qos=qos)
        return True

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def stop(self) -> None:
        self._stopping.set()

    def reconnect(self) -> None:
        """Drop the connection; the supervisor reconnects and the broker redelivers unacked."""
        # MQTT redelivers an unacknowledged QoS 1 message only when the session resumes
        self._lost.set()


class GmqttPublisher:
    """Publisher for the simulator, the benchmarks and tests."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        client_id: str | None = None,
        max_inflight: int = 1000,
        mqtt_version: int = MQTTv50,
    ) -> None:
        self.endpoint = endpoint
        self.mqtt_version = mqtt_version
        self.client_id = client_id or f"lingtan-pub-{uuid.uuid4().hex[:8]}"
        self.max_inflight = max_inflight
        self._client: Any = None

    async def connect(self) -> None:
        client = GmqttClient(self.client_id)
        # fail loudly instead of gmqtt's background reconnect loop (which outlives close())
        client.set_config({"reconnect_retries": 0})
        if self.endpoint.username:
            client.set_auth_credentials(self.endpoint.username, self.endpoint.password)
        await client.connect(
            self.endpoint.host, self.endpoint.port, ssl=self.endpoint.tls, version=self.mqtt_version
        )
        self._client = client

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish; waits while `max_inflight` QoS 1 messages are unacknowledged.

        gmqtt itself has no flow control: once the broker's receive maximum (from CONNACK) of
        messages is unacknowledged it runs out of packet ids and raises.
        """
        ids = self._client._package_handler.id_generator
        while len(ids._used_ids) >= min(self.max_inflight, ids._max - 2):
            await asyncio.sleep(0.001)
        self._client.publish(topic, payload, qos=qos)

    async def drain(self, timeout_s: float = 60.0) -> None:
        """Wait until the broker acknowledged every QoS 1 message published so far."""
        storage = self._client._persistent_storage  # gmqtt keeps unacked QoS>0 messages here
        try:
            await asyncio.wait_for(storage.wait_empty(), timeout=timeout_s)
        except TimeoutError as exc:
            raise TimeoutError("broker did not acknowledge all published messages") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.disconnect()
            self._client = None


__all__ = [
    "Backoff",
    "BatchSink",
    "GmqttPublisher",
    "GmqttSubscriber",
    "MQTTv50",
    "MQTTv311",
    "MessageHandler",
    "MqttEndpoint",
    "PubackSender",
    "Subscriber",
]
