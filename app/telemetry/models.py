"""Validated telemetry: one reading of one device, and a rejected payload (dead letter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import msgspec

TsSource = Literal["device", "collector"]


class Reading(msgspec.Struct, frozen=True, gc=False):
    """One accepted reading, as received (values keep their `<quantity>_<unit>` names).

    `ts_ns` is UTC epoch nanoseconds. `values` holds counters, instantaneous quantities and
    any unknown numeric fields the gateway sent (kept, never dropped). `reset` is the
    gateway's `"reset": true` (counters restarted, e.g. meter replaced).
    """

    # A msgspec Struct rather than a frozen dataclass: the collector builds one per reading,
    # and a frozen dataclass pays an `object.__setattr__` per field (~2 µs against ~0.25 µs,
    # docs/performance.md). `gc=False`: it holds only strings, numbers and a dict of floats,
    # so it can never be part of a reference cycle.
    park: str
    device: str
    ts_ns: int
    values: dict[str, float]
    reset: bool = False
    ts_source: TsSource = "device"


class RejectReason(StrEnum):
    """Machine-readable dead-letter reasons (also the metric label)."""

    BAD_TOPIC = "bad_topic"
    INVALID_JSON = "invalid_json"
    INVALID_READING = "invalid_reading"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_PARK = "unknown_park"
    UNKNOWN_DEVICE = "unknown_device"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_LARGE = "too_large"
    #: a Sparkplug metric alias no BIRTH announced (a rebirth is requested)
    UNKNOWN_ALIAS = "unknown_alias"
    #: the gateway reported an error code instead of a value (e.g. a Neuron tag's `errors`)
    GATEWAY_ERROR = "gateway_error"
    #: same device and ts as a stored reading, other values: the first stays, this is kept
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload (or one element of an array payload) that was not accepted, and why."""

    received_ns: int
    topic: str
    park: str | None
    device: str | None
    reason: RejectReason
    detail: str
    raw: bytes = field(repr=False)
