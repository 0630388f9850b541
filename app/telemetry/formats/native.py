"""Lingtan's own JSON on `lingtan/v1/{park}/{device}/telemetry`, as a format among the others."""

from __future__ import annotations

from app.registry.models import Registry
from app.telemetry.decode import TOPIC_PREFIX, DecodeLimits, TelemetryDecoder
from app.telemetry.formats.base import Filters, FormatResult

#: Everything under `lingtan/`, not only the telemetry filter: a gateway publishing beside the
#: contract's topic (`lingtan/v1/<park>/<dev>/status`, a typo in `telemetry`) then gets a
#: `bad_topic` dead letter with its raw bytes instead of vanishing at the broker
#: (docs/broker.md, "Topics").
NATIVE_SUBSCRIPTION = "lingtan/#"


class NativeFormat:
    """The contract's native JSON (docs/api.md); everything not another format's lands here."""

    name = "native"

    def __init__(self, registry: Registry, limits: DecodeLimits) -> None:
        self.decoder = TelemetryDecoder(registry, limits)

    def set_registry(self, registry: Registry) -> None:
        self.decoder.registry = registry

    def filters(self) -> Filters:
        return Filters(shared=(NATIVE_SUBSCRIPTION,))

    def matches(self, topic: str) -> bool:
        return topic.startswith(TOPIC_PREFIX)

    def decode(self, topic: str, payload: bytes, now_ns: int) -> FormatResult:
        got = self.decoder.decode(topic, payload, now_ns)
        return FormatResult(self.name, got.readings, got.deadletters, got.ignored_fields)
