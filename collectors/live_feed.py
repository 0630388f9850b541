"""Live feed for `lingtan api`: a clean-session subscriber keeping the in-memory live view current.

It validates with the same decoder as the collector but stores nothing: the collector owns
durability; this only tells the API what is happening right now, without a database
round-trip per request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

from app.registry.holder import RegistryChange, RegistryHolder
from app.telemetry.formats import GatewayDecoder
from app.telemetry.models import Reading
from collectors.mqtt import GmqttSubscriber, MqttEndpoint, MQTTv50


def live_subscriber(
    mqtt_url: str,
    registry: RegistryHolder,
    apply: Callable[[Iterable[Reading]], object],
    *,
    mqtt_version: int = MQTTv50,
) -> tuple[GmqttSubscriber, Callable[[str, bytes], object]]:
    """A clean-session subscriber and its handler; run with `await sub.run(handler)`.
    It decodes against the registry in force (it follows the holder's edits)."""
    decoder = GatewayDecoder(registry.registry)  # every gateway format (docs/gateways.md)
    filters = decoder.filters()
    sub = GmqttSubscriber(
        MqttEndpoint.parse(mqtt_url),
        filters.shared,
        f"lingtan-api-live-{uuid.uuid4().hex[:8]}",
        qos=0,
        persistent=False,
        mqtt_version=mqtt_version,
        unshared=filters.unshared,
    )

    def follow(change: RegistryChange) -> None:
        decoder.registry = change.new
        now = decoder.filters()
        sub.set_filters(now.shared, now.unshared)

    registry.subscribe(follow)

    async def handle(topic: str, payload: bytes) -> None:
        decoded = decoder.decode(topic, payload, time.time_ns())
        if decoded.readings:
            apply(decoded.readings)

    return sub, handle
