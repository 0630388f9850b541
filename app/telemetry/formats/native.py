"""Lingtan's own JSON on `lingtan/v1/{park}/{device}/telemetry`, as a format among the others."""

from __future__ import annotations

from app.registry.models import Registry
from app.telemetry.decode import TOPIC_FILTER, TOPIC_PREFIX, DecodeLimits, TelemetryDecoder
from app.telemetry.formats.base import Filters, FormatResult


class NativeFormat:
    """The contract's native JSON (docs/api.md); everything not another format's lands here."""

    name = "native"

    def __init__(self, registry: Registry, limits: DecodeLimits) -> None:
        self.decoder = TelemetryDecoder(registry, limits)

    def set_registry(self, registry: Registry) -> None:
        self.decoder.registry = registry

    def filters(self) -> Filters:
        return Filters(shared=(TOPIC_FILTER,))

    def matches(self, topic: str) -> bool:
        return topic.startswith(TOPIC_PREFIX)

    def decode(self, topic: str, payload: bytes, now_ns: int) -> FormatResult:
        got = self.decoder.decode(topic, payload, now_ns)
        return FormatResult(self.name, got.readings, got.deadletters, got.ignored_fields)
