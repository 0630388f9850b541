"""The MQTT topic filters the collector starts with, before the registry adds gateway formats'.

The native format reads everything under `lingtan/` (off-contract topics become `bad_topic`
dead letters, docs/broker.md); each gateway format adds its own filters
(`GatewayDecoder.filters`, docs/gateways.md).
"""

from __future__ import annotations

from app.telemetry.formats.native import NATIVE_SUBSCRIPTION

#: Topic filters the collector subscribes to at start (each also as `$share/<group>/<filter>`).
SUBSCRIPTIONS: tuple[str, ...] = (NATIVE_SUBSCRIPTION,)

__all__ = ["SUBSCRIPTIONS"]
