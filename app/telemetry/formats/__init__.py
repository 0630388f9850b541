"""Gateway formats: the registry of parsers and the decoder that routes each message to one.

Each format (one module here) turns a topic and payload bytes into readings and dead
letters behind the small interface in `base.Format`; adding a format is a module and a line
in `FORMATS` (docs/gateways.md).
"""

from __future__ import annotations

from collections.abc import Callable

from app.registry.models import Registry
from app.telemetry.decode import DecodeLimits
from app.telemetry.formats.base import Command, Filters, Format, FormatResult
from app.telemetry.formats.mapped import MappedJsonFormat
from app.telemetry.formats.native import NativeFormat
from app.telemetry.formats.neuron import NeuronFormat
from app.telemetry.formats.sparkplug import SparkplugFormat
from app.telemetry.models import Reading

#: name → factory; the order is the order topics are tried in (native last: it takes the rest)
FORMATS: dict[str, Callable[[Registry, DecodeLimits], Format]] = {
    "sparkplug": SparkplugFormat,
    "json": MappedJsonFormat,
    "neuron": NeuronFormat,
    "native": NativeFormat,
}
#: Topics whose format is remembered (gateways reuse a few thousand topics); junk topics
#: beyond this clear the memory rather than grow it.
_TOPIC_CACHE_MAX = 16384


class GatewayDecoder:
    """Decodes any message the collector receives with the format its topic belongs to.

    Pure apart from the formats' own state (Sparkplug aliases and sequence numbers): takes
    the arrival time as an argument, performs no I/O; what must be published back (rebirth
    requests) comes out in `FormatResult.commands`.
    """

    def __init__(self, registry: Registry, limits: DecodeLimits | None = None) -> None:
        self.limits = limits or DecodeLimits()
        self._registry = registry
        self.formats: dict[str, Format] = {
            name: make(registry, self.limits) for name, make in FORMATS.items()
        }
        self._native = self.formats["native"]
        native = self._native
        assert isinstance(native, NativeFormat)
        self._plain = native.decoder.plain
        self._others = [f for name, f in self.formats.items() if name != "native"]
        self._format_of: dict[str, Format] = {}

    @property
    def registry(self) -> Registry:
        return self._registry

    @registry.setter
    def registry(self, registry: Registry) -> None:
        """Follow an edited registry: every format re-reads its device sources."""
        self._registry = registry
        for fmt in self.formats.values():
            fmt.set_registry(registry)
        self._format_of.clear()  # a topic may belong to another format now

    def filters(self) -> Filters:
        """Every topic filter the configured formats need (the native one always)."""
        shared: list[str] = []
        unshared: list[str] = []
        for fmt in self.formats.values():
            got = fmt.filters()
            shared += [f for f in got.shared if f not in shared]
            unshared += [f for f in got.unshared if f not in unshared]
        return Filters(tuple(shared), tuple(unshared))

    def format_of(self, topic: str) -> Format:
        fmt = self._format_of.get(topic)
        if fmt is None:
            fmt = self._match(topic)
            if len(self._format_of) >= _TOPIC_CACHE_MAX:
                self._format_of.clear()
            self._format_of[topic] = fmt
        return fmt

    def _match(self, topic: str) -> Format:
        if self._native.matches(topic):
            return self._native
        for fmt in self._others:
            if fmt.matches(topic):
                return fmt
        return self._native  # its dead letter says what a topic must look like

    def decode(self, topic: str, payload: bytes, now_ns: int) -> FormatResult:
        return self.format_of(topic).decode(topic, payload, now_ns)

    def plain(self, topic: str, payload: bytes, now_ns: int) -> list[Reading] | None:
        """The readings of a plain native message (`TelemetryDecoder.plain`): what `decode`
        would give, without its per-message result objects; None: use `decode`."""
        if self.format_of(topic) is not self._native:
            return None
        return self._plain(topic, payload, now_ns)


__all__ = [
    "FORMATS",
    "Command",
    "Filters",
    "Format",
    "FormatResult",
    "GatewayDecoder",
]
