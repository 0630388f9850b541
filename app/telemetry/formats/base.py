"""The interface every gateway format implements, and the helpers they share.

A format turns one MQTT message (topic + payload bytes) into readings and dead letters,
like a Telegraf parser. Every mapped value is validated by the native decoder, so a value
from a Sparkplug metric or a Neuron tag is accepted or rejected for exactly the reasons the
native JSON would be (docs/gateways.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext
from typing import Any, Protocol

from app.registry.models import Registry
from app.telemetry.decode import DecodeLimits, TelemetryDecoder
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
    if scale == 1.0 or type(value) not in (int, float):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return value
    with localcontext() as ctx:
        ctx.prec = 80  # exact product of two 17-digit decimals, rounded once by float()
        return float(Decimal(repr(value)) * Decimal(repr(scale)))


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
    try:
        body = json.dumps(item, allow_nan=True).encode()
    except (TypeError, ValueError) as exc:  # cannot happen for JSON-decoded input
        reject(out, now_ns, topic, payload, RejectReason.INVALID_READING, f"{where}: {exc}")
        return
    got = native.decode(f"lingtan/v1/{park}/{device}/telemetry", body, now_ns)
    out.readings += got.readings
    out.ignored_fields += got.ignored_fields
    for dl in got.deadletters:
        detail = f"{where}: {dl.detail}"
        out.deadletters.append(replace(dl, topic=topic, raw=payload, detail=detail))
