"""Which MQTT topics the collector subscribes to, and which gateway format reads each topic.

The collector subscribes to everything under `lingtan/` rather than to the telemetry filter
alone, so a gateway publishing beside the contract's topic (`lingtan/v1/<park>/<dev>/status`,
a typo in `telemetry`) produces a `bad_topic` dead letter with its raw bytes instead of
vanishing at the broker (docs/broker.md). Adding a gateway format means one more filter in
`SUBSCRIPTIONS` and one more branch in `route`.
"""

from __future__ import annotations

from enum import StrEnum

#: Topic filters the collector subscribes to (each also as `$share/<group>/<filter>`).
SUBSCRIPTIONS: tuple[str, ...] = ("lingtan/#",)


class TopicFormat(StrEnum):
    """The decoder a topic goes to."""

    #: Lingtan's own JSON on `lingtan/v1/{park}/{device}/telemetry`; its decoder dead-letters
    #: every other `lingtan/` topic as `bad_topic`
    NATIVE = "native"


def route(topic: str) -> TopicFormat | None:
    """The format that reads `topic`; None: no format does (dead-letter it as `bad_topic`)."""
    if topic.startswith("lingtan/"):
        return TopicFormat.NATIVE
    return None


__all__ = ["SUBSCRIPTIONS", "TopicFormat", "route"]
