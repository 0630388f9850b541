"""The interface every gateway format implements, and the helpers they share.

A format turns one MQTT message (topic + payload bytes) into readings and dead letters,
like a Telegraf parser. Every mapped value is validated by the native decoder, so a value
from a Sparkplug metric or a Neuron tag is accepted or rejected for exactly the reasons the
native JSON would be (docs/gateways.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from functools import lru_cache
from typing import Any, Protocol

from app.registry.models import Registry
from app.telemetry.decode import Decoded, DecodeLimits, TelemetryDecoder
from app.telemetry.models import DeadLetter, Reading, RejectReason


@dataclass(frozen=True, slots=True)
class Command:
    """A message the collector publishes back to a gateway (e.g. a Sparkplug rebirth request)."""

    topic: str
    payload: bytes
    qos: int = 0


@dataclass(slots=True)
class FormatResult:
    """What one message gave: readings, dead letters, what the collector counts or sends."""

    format: str
    readings: list[Reading] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    #: non-numeric or unmapped fields not stored (the message itself was used)
    ignored_fields: int = 0
    #: the message concerned no registered device (e.g. a Sparkplug device nobody mapped)
    unmapped: bool = False
    #: messages to publish to gateways
    commands: list[Command] = field(default_factory=list)
    #: Sparkplug `seq` numbers missed before this message (0: in order)
    seq_gaps: int = 0


@dataclass(frozen=True, slots=True)
class Filters:
    """MQTT topic filters a format needs: `shared` may be split among collectors of a share
    group; `unshared` must reach every collector (e.g. Sparkplug BIRTHs, which every
    collector needs to read the aliases in the DATA messages it gets)."""

    shared: tuple[str, ...] = ()
    unshared: tuple[str, ...] = ()


class Format(Protocol):
    """One gateway format: follows the registry, names its topics, decodes messages."""

    name: str

    def set_registry(self, registry: Registry) -> None:
        """Use this registry's device sources from now on."""
        ...

    def filters(self) -> Filters:
        """Topic filters to subscribe for the devices the registry maps to this format."""
        ...

    def matches(self, topic: str) -> bool:
        """Whether a message on this topic is this format's to decode."""
        ...

    def decode(self, topic: str, payload: bytes, now_ns: int) -> FormatResult:
        """Readings and dead letters of one message; never raises on bad input."""
        ...


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (`+` one level, `#` the rest)."""
    if topic_filter == topic:
        return True
    fparts = topic_filter.split("/")
    tparts = topic.split("/")
    for i, f in enumerate(fparts):
        if f == "#":
            return True
        if i >= len(tparts):
            return False
        if f != "+" and f != tparts[i]:
            return False
    return len(fparts) == len(tparts)


def scaled(value: Any, scale: float) -> Any:
    """`value × scale`, correctly rounded from their decimal forms (8765432109 × 0.001 is
    8765432.109, where float multiplication gives 8765432.109000001); non-numbers unchanged,
    for the native validation to reject."""
    if scale == 1.0:
        return value
    kind = type(value)
    if kind is int:
        # integer counters (Wh from a meter) with scales like 1000, 0.001 or 4000: Python's
        # int × int is exact and int / int correctly rounded, so no Decimal is needed
        times, divide = _integer_plan(scale)
        try:
            if times:
                return float(value * times)
            if divide:
                return value / divide
        except OverflowError:  # beyond any float: the native check rejects it as it is
            return value
    elif kind is not float or not math.isfinite(value):
        return value
    with localcontext() as ctx:
        ctx.prec = 80  # exact product of two 17-digit decimals, rounded once by float()
        product = Decimal(repr(value)) * Decimal(repr(scale))
    try:
        return float(product)
    except OverflowError:
        return value


@lru_cache(maxsize=1024)
def _integer_plan(scale: float) -> tuple[int, int]:
    """(n, 0) when the scale is the integer n, (0, n) when it is exactly 1/n, else (0, 0)."""
    exact = Decimal(repr(scale))
    if exact == exact.to_integral_value():
        return int(exact), 0
    inverse = 1 / exact
    if inverse == inverse.to_integral_value() and exact * int(inverse) == 1:
        return 0, int(inverse)
    return 0, 0


def reject(
    out: FormatResult,
    now_ns: int,
    topic: str,
    payload: bytes,
    reason: RejectReason,
    detail: str,
    park: str | None = None,
    device: str | None = None,
) -> FormatResult:
    out.deadletters.append(DeadLetter(now_ns, topic, park, device, reason, detail, payload))
    return out


def too_large(
    out: FormatResult, limits: DecodeLimits, topic: str, payload: bytes, now_ns: int
) -> bool:
    if len(payload) <= limits.max_payload_bytes:
        return False
    reject(
        out,
        now_ns,
        topic,
        payload,
        RejectReason.TOO_LARGE,
        f"payload of {len(payload)} bytes exceeds {limits.max_payload_bytes}",
    )
    return True


def emit(
    native: TelemetryDecoder,
    out: FormatResult,
    *,
    park: str,
    device: str,
    ts: Any,
    values: dict[str, Any],
    topic: str,
    payload: bytes,
    now_ns: int,
    where: str,
) -> None:
    """Validate one device's mapped values as a native reading and add the outcome to `out`.

    Dead letters keep the gateway's topic and raw bytes; `where` says which gateway, node or
    element the values came from.
    """
    item = dict(values)
    if ts is not None:
        item["ts"] = ts
    got = Decoded()
    result = native.decode_reading(park, device, item, now_ns, got)
    out.ignored_fields += got.ignored_fields
    if isinstance(result, Reading):
        out.readings.append(result)
    else:
        reason, detail = result
        reject(out, now_ns, topic, payload, reason, f"{where}: {detail}", park, device)
