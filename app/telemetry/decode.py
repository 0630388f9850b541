# Long module: the native format's hot decoder: fast path and strict fallback side by side.
"""Decode one MQTT telemetry message into readings and dead letters (docs/gateway-contract.md)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.registry.models import COUNTER_QUANTITIES, INSTANT_QUANTITIES, Registry, valid_id
from app.telemetry.compiled import UNDERFLOW_ZEROS, CompiledNative
from app.telemetry.models import DeadLetter, Reading, RejectReason

TOPIC_PREFIX = "lingtan/v1/"
TOPIC_FILTER = "lingtan/v1/+/+/telemetry"

#: Earliest plausible timestamp: a gateway with an unset clock sends 1970 dates.
MIN_TS_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
#: Epoch numbers must land before this (2100-01-01T00:00:00Z) in the unit they are read in.
MAX_EPOCH_NS = 4_102_444_800 * 10**9
#: Largest absolute value accepted for any quantity; beyond this it is a glitch, not a reading.
MAX_ABS_VALUE = 1e12
#: Extra (unknown) field names we keep: same shape as the contract's `<quantity>_<unit>`.
_EXTRA_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # used with fullmatch: "$" allows a final "\n"
#: Names that would collide with storage tags or our own bookkeeping fields.
RESERVED_NAMES = frozenset(
    {
        "ts",
        "reset",
        "time",
        "park",
        "device",
        "role",
        "ts_source",
        "estimated",
        "flags",
        "duration_s",
    }
)


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Knobs for what is accepted; defaults suit real gateways."""

    max_payload_bytes: int = 1_048_576
    max_future_s: float = 300.0
    max_array_len: int = 10_000


@dataclass(slots=True)
class Decoded:
    """Result of decoding one message: what to store and what to dead-letter."""

    readings: list[Reading] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    ignored_fields: int = 0


class _ReadingIn(BaseModel):
    """One reading object as gateways send it; strict so "12.5" or true is not a number."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")

    ts: str | float | None = None
    reset: bool = False
    # cumulative counters: never negative
    energy_import_kwh: float | None = Field(default=None, ge=0)
    energy_export_kwh: float | None = Field(default=None, ge=0)
    energy_kwh: float | None = Field(default=None, ge=0)
    energy_charge_kwh: float | None = Field(default=None, ge=0)
    energy_discharge_kwh: float | None = Field(default=None, ge=0)
    heat_kwh: float | None = Field(default=None, ge=0)
    heat_gj: float | None = Field(default=None, ge=0)
    gas_m3: float | None = Field(default=None, ge=0)
    fuel_kg: float | None = Field(default=None, ge=0)
    fuel_l: float | None = Field(default=None, ge=0)
    h2_kg: float | None = Field(default=None, ge=0)
    # instantaneous
    power_kw: float | None = None
    soc_pct: float | None = Field(default=None, ge=0, le=100)
    soh_pct: float | None = Field(default=None, ge=0, le=100)
    temp_c: float | None = Field(default=None, ge=-90, le=200)
    supply_temp_c: float | None = Field(default=None, ge=-90, le=400)
    return_temp_c: float | None = Field(default=None, ge=-90, le=400)
    flow_m3h: float | None = Field(default=None, ge=0)
    voltage_v: float | None = Field(default=None, ge=0)
    current_a: float | None = None


_KNOWN = COUNTER_QUANTITIES | INSTANT_QUANTITIES


def _known_bounds() -> dict[str, tuple[float, float]]:
    """Per known quantity, the closed range both `_ReadingIn` and `MAX_ABS_VALUE` accept.

    Read from the model itself, so the fast path cannot drift from the pydantic reference.
    """
    fields = _ReadingIn.model_fields
    if set(fields) != _KNOWN | {"ts", "reset"}:
        raise RuntimeError("_ReadingIn and the contract's quantities disagree")
    bounds: dict[str, tuple[float, float]] = {}
    for name in _KNOWN:
        low, high = -MAX_ABS_VALUE, MAX_ABS_VALUE
        for constraint in fields[name].metadata:
            ge, le = getattr(constraint, "ge", None), getattr(constraint, "le", None)
            if ge is None and le is None:  # a new kind of constraint: teach the fast path first
                raise RuntimeError(f"{name}: the fast path does not know {constraint!r}")
            if ge is not None:
                low = max(low, float(ge))
            if le is not None:
                high = min(high, float(le))
        bounds[name] = (low, high)
    return bounds


_BOUNDS = _known_bounds()
#: Integer epoch times `parse_ts` accepts as seconds or milliseconds; float() of them is exact.
_MAX_INT_TS = 10**14


def parse_topic(topic: str) -> tuple[str, str] | None:
    """Return (park, device) of a telemetry topic, or None if it is not one."""
    try:
        return _topic_cache[topic]
    except KeyError:
        pass
    ids = _parse_topic(topic)
    if ids is not None:  # only well-formed (short) topics: junk must not fill memory
        if len(_topic_cache) >= _TOPIC_CACHE_MAX:
            _topic_cache.clear()
        _topic_cache[topic] = ids
    return ids


# Gateways publish on the same few thousand topics over and over; what a topic names never
# changes (whether it is registered does, so that is looked up every time).
_TOPIC_CACHE_MAX = 16384
_topic_cache: dict[str, tuple[str, str]] = {}


def _parse_topic(topic: str) -> tuple[str, str] | None:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "lingtan" or parts[1] != "v1" or parts[4] != "telemetry":
        return None
    park, device = parts[2], parts[3]
    if not (valid_id(park) and valid_id(device)):
        return None
    return park, device


def parse_ts(value: str | float | int) -> int:
    """RFC 3339 with offset, or epoch seconds / milliseconds → UTC epoch ns.

    An epoch number is milliseconds when it is a JSON integer of 1e11 or more, otherwise
    seconds (so `1e12` or `1795000000000.0` are seconds, far beyond 2100); either way it must
    land before 2100, or it is refused rather than read in the other unit (the caller
    refuses times before 2000).
    """
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"ts {value!r} is not RFC 3339") from exc
        if dt.tzinfo is None:
            raise ValueError(f"ts {value!r} has no UTC offset (RFC 3339 needs one, e.g. +08:00)")
        return _datetime_ns(dt)
    if not math.isfinite(value):
        raise ValueError("ts is not finite")
    if value <= 0:
        raise ValueError(f"ts {value!r} is not a positive epoch time")
    if type(value) is int and value >= 10**11:
        if value >= _MAX_INT_TS:
            raise ValueError(f"ts {value!r} is neither epoch seconds nor milliseconds")
        ns, unit = value * 1_000_000, "milliseconds"
    elif value < 1e11:
        ns, unit = round(value * 1_000_000) * 1000, "seconds"
    else:
        raise ValueError(
            f"ts {value!r} read as epoch seconds is after 2100 (milliseconds are integers)"
        )
    if ns >= MAX_EPOCH_NS:
        raise ValueError(f"ts {value!r} read as epoch {unit} is after 2100")
    return ns  # before 2000: the caller says so (a gateway clock that was never set)


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def _datetime_ns(dt: datetime) -> int:
    # integer arithmetic: dt.timestamp() is a float and would lose microseconds
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


_MAX_INPUT_REPR = 200


def _input_repr(value: Any) -> str:
    """repr of an offending input for a dead letter's detail; the raw bytes hold the rest."""
    try:
        text = repr(value)
    except RecursionError:  # deeply nested lists/objects
        return f"<deeply nested {type(value).__name__}>"
    if len(text) > _MAX_INPUT_REPR:
        return text[:_MAX_INPUT_REPR] + "…"
    return text


def _element_bytes(item: Any, payload: bytes) -> bytes:
    """One array element re-serialised as its dead letter's raw bytes (whole payload if not)."""
    try:
        return json.dumps(item, ensure_ascii=False).encode()
    except (RecursionError, ValueError):
        return payload


class _Underflow(float):
    """A JSON number whose literal is not zero but which reads as 0.0 (e.g. `1e-400`)."""

    literal: str


def _parse_float(text: str) -> float:
    number = float(text)
    if number == 0.0 and any(c in "123456789" for c in text.split("e")[0].split("E")[0]):
        marked = _Underflow(0.0)
        marked.literal = text
        return marked
    return number


_JSON = json.JSONDecoder()
#: only for payloads that may hold an underflowing literal (an exponent or a long fraction)
_JSON_UNDERFLOW = json.JSONDecoder(parse_float=_parse_float)
_ZEROS = UNDERFLOW_ZEROS


class PayloadEncodingError(ValueError):
    """The payload is not plain UTF-8 JSON text (a BOM, UTF-16/32, a lone surrogate)."""


def _loads(payload: bytes) -> Any:
    """The payload as JSON, read strictly as UTF-8 (the MQTT contract: UTF-8 JSON only).

    `json.loads(bytes)` would guess UTF-16/32 from a BOM or NUL bytes and let surrogates
    through; here a BOM, another encoding and a lone surrogate (raw or escaped) are refused.
    """
    head = payload[:4]
    if not (len(head) > 1 and head[0] in b"{[" and head[1]):  # not plainly JSON: look closer
        if payload.startswith(b"\xef\xbb\xbf"):
            raise PayloadEncodingError("starts with a UTF-8 byte order mark (send plain UTF-8)")
        if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head:
            raise PayloadEncodingError("UTF-16 or UTF-32 (send UTF-8)")
    text = payload.decode("utf-8")  # strict: raw surrogates and invalid bytes raise
    # an exponent or a very long fraction may underflow: only then the slower decoder
    underflow = b"e-" in payload or b"E-" in payload or _ZEROS in payload
    doc = (_JSON_UNDERFLOW if underflow else _JSON).decode(text)
    if "\\ud" in text or "\\uD" in text:  # an escaped surrogate: is each one paired?
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PayloadEncodingError("holds a lone surrogate (\\uD800-\\uDFFF)") from exc
    return doc


#: the strict payload reader every JSON gateway format uses (docs/gateway-contract.md §2)
load_json = _loads


def _first_error(exc: ValidationError) -> tuple[RejectReason, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "reading"
    kind = err["type"]
    got = _input_repr(err.get("input"))
    if kind == "finite_number":
        return RejectReason.NON_FINITE, f"{loc}: not a finite number"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        return RejectReason.OUT_OF_RANGE, f"{loc}: {err['msg']} (got {got})"
    return RejectReason.INVALID_READING, f"{loc}: {err['msg']} (got {got})"


class _Rejected(Exception):
    """A whole message rejected before its readings are looked at (one dead letter)."""

    def __init__(
        self,
        reason: RejectReason,
        detail: str,
        park: str | None = None,
        device: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.park, self.device = reason, detail, park, device


def _document(payload: bytes, park_id: str, device_id: str) -> Any:
    """The payload parsed as JSON; NaN/Infinity literals parse here and are rejected per
    reading, so one bad element of a gateway's array does not take its good neighbours."""
    try:
        return _loads(payload)
    except PayloadEncodingError as exc:
        detail = f"not UTF-8 JSON: {exc}"
    except UnicodeDecodeError as exc:
        detail = f"not UTF-8 JSON: invalid UTF-8 ({exc.reason} at byte {exc.start})"
    except ValueError as exc:
        detail = f"not UTF-8 JSON: {exc}"
    except RecursionError:
        # ~1,000 nested brackets exhaust json's recursion: bad input, not a collector crash
        detail = "not usable JSON: nested too deeply"
    raise _Rejected(RejectReason.INVALID_JSON, detail, park_id, device_id)


class TelemetryDecoder:
    """Validates telemetry against the contract and the park registry.

    Pure: takes the arrival time as an argument, performs no I/O.
    """

    def __init__(
        self, registry: Registry, limits: DecodeLimits | None = None, *, fast_path: bool = True
    ) -> None:
        self.registry = registry
        self.limits = limits or DecodeLimits()
        #: False: every reading goes through pydantic (the reference the fast paths must match)
        self.fast_path = fast_path
        self._compiled = CompiledNative(
            _BOUNDS, parse_ts, MIN_TS_NS, MAX_EPOCH_NS, self.limits.max_array_len
        )
        self._future_ns = int(self.limits.max_future_s * 1e9)
        #: telemetry topics of devices registered in `_registered_in` (the registry object)
        self._registered: dict[str, tuple[str, str]] = {}
        self._registered_in = registry

    def plain(self, topic: str, payload: bytes, now_ns: int) -> list[Reading] | None:
        """The readings of a plain payload (`compiled.py`) to a registered device; None: the
        message needs `decode` (which gives the same readings for a plain one)."""
        if self._registered_in is not self.registry:  # edited: what is registered may differ
            self._registered.clear()
            self._registered_in = self.registry
        ids = self._registered.get(topic)
        if ids is None:
            ids = self._registered_target(topic)
            if ids is None:
                return None
        if len(payload) > self.limits.max_payload_bytes:
            return None
        return self._compiled.readings(ids[0], ids[1], payload, now_ns, now_ns + self._future_ns)

    def _registered_target(self, topic: str) -> tuple[str, str] | None:
        """(park, device) of a telemetry topic of a registered device, remembered."""
        ids = parse_topic(topic)
        if ids is None or not self.fast_path or self.registry.device(*ids) is None:
            return None
        if len(self._registered) >= _TOPIC_CACHE_MAX:
            self._registered.clear()
        self._registered[topic] = ids
        return ids

    def decode(self, topic: str, payload: bytes, now_ns: int) -> Decoded:
        out = Decoded()
        try:
            park_id, device_id = self._target(topic, len(payload))
            if self.fast_path:
                max_ns = now_ns + self._future_ns
                plain = self._compiled.readings(park_id, device_id, payload, now_ns, max_ns)
                if plain is not None:
                    out.readings = plain
                    return out
            items, single = self._items(_document(payload, park_id, device_id), park_id, device_id)
        except _Rejected as r:
            out.deadletters.append(
                DeadLetter(now_ns, topic, r.park, r.device, r.reason, r.detail, payload)
            )
            return out
        max_ts_ns = now_ns + self._future_ns
        fast = self._fast_reading if self.fast_path else None
        for index, item in enumerate(items):
            result: Reading | tuple[RejectReason, str] | None = None
            if fast is not None:
                result = fast(park_id, device_id, item, now_ns, max_ts_ns, out)
            if result is None:
                result = self._reading(park_id, device_id, item, now_ns, max_ts_ns, out)
            if isinstance(result, Reading):
                out.readings.append(result)
            else:
                reason, detail = result
                where = "" if single else f"element {index} of {len(items)}: "
                # for one element of an array, keep that element (re-serialised) as the raw bytes
                raw = payload if single else _element_bytes(item, payload)
                out.deadletters.append(
                    DeadLetter(now_ns, topic, park_id, device_id, reason, where + detail, raw)
                )
        return out

    def _target(self, topic: str, size: int) -> tuple[str, str]:
        """(park, device) of a message on `topic` of `size` bytes, both registered."""
        ids = parse_topic(topic)
        if ids is None:
            raise _Rejected(
                RejectReason.BAD_TOPIC,
                "topic must be lingtan/v1/{park}/{device}/telemetry with ids [A-Za-z0-9_.-]{1,64}",
            )
        park_id, device_id = ids
        park = self.registry.park(park_id)
        if park is None:
            raise _Rejected(
                RejectReason.UNKNOWN_PARK,
                f"park {park_id!r} is not in the registry",
                park_id,
                device_id,
            )
        if park.device(device_id) is None:
            raise _Rejected(
                RejectReason.UNKNOWN_DEVICE,
                f"device {device_id!r} is not registered in park {park_id!r}",
                park_id,
                device_id,
            )
        if size > self.limits.max_payload_bytes:
            raise _Rejected(
                RejectReason.TOO_LARGE,
                f"payload of {size} bytes exceeds {self.limits.max_payload_bytes}",
                park_id,
                device_id,
            )
        return park_id, device_id

    def _items(self, doc: Any, park_id: str, device_id: str) -> tuple[list[Any], bool]:
        """The reading objects of a parsed payload, and whether it was a single object."""
        if isinstance(doc, dict):
            return [doc], True
        if not isinstance(doc, list):
            raise _Rejected(
                RejectReason.INVALID_READING,
                f"payload must be a JSON object or an array of objects, not {type(doc).__name__}",
                park_id,
                device_id,
            )
        if not doc:
            raise _Rejected(
                RejectReason.INVALID_READING, "empty array: no readings", park_id, device_id
            )
        if len(doc) > self.limits.max_array_len:
            raise _Rejected(
                RejectReason.TOO_LARGE,
                f"array of {len(doc)} readings exceeds {self.limits.max_array_len}",
                park_id,
                device_id,
            )
        return doc, False

    def decode_reading(
        self, park: str, device: str, item: dict[str, Any], now_ns: int, out: Decoded
    ) -> Reading | tuple[RejectReason, str]:
        """One reading object already parsed (a gateway format's mapped values, see
        docs/gateways.md), checked exactly as one element of a native payload; ignored fields
        are counted in `out`. The caller has looked the device up in this registry."""
        max_ts_ns = now_ns + int(self.limits.max_future_s * 1e9)
        if self.fast_path:
            reading = self._fast_reading(park, device, item, now_ns, max_ts_ns, out)
            if reading is not None:
                return reading
        return self._reading(park, device, item, now_ns, max_ts_ns, out)

    def _fast_reading(
        self, park: str, device: str, item: Any, now_ns: int, max_ts_ns: int, out: Decoded
    ) -> Reading | None:
        """The well-formed case without pydantic (~4× cheaper); None: `_reading` decides.

        Returns a reading only where `_reading` returns the same one and counts the same
        ignored fields; anything unusual (a wrong type, a bound crossed, a name that is not
        plainly `<quantity>_<unit>`, a ts that does not parse or is out of range) is left to
        `_reading`, so dead letters and their details come from one place
        (tests/test_decode_fastpath.py checks the two agree).
        """
        if type(item) is not dict:
            return None
        bounds = _BOUNDS
        values: dict[str, float] = {}
        ts: Any = None
        reset = False
        ignored = 0
        for name, value in item.items():
            known = bounds.get(name)
            kind = type(value)
            if known is not None:
                # bool is not a number here (strict model); NaN fails every comparison
                if (kind is float or kind is int) and known[0] <= value <= known[1]:
                    values[name] = float(value)
                elif value is not None:
                    return None
            elif name == "ts":
                if value is None:
                    return None  # "ts": null is a dead letter, said by `_reading`
                ts = value
            elif name == "reset":
                if kind is not bool:
                    return None
                reset = value
            elif name in RESERVED_NAMES:
                continue
            elif _EXTRA_NAME.fullmatch(name) is None:
                # pydantic itself rejects some odd keys (lone surrogates): not our call
                return None
            elif kind is float or kind is int:
                if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
                    return None
                values[name] = float(value)
            else:
                ignored += 1
        if not values and not reset:
            return None
        if ts is None:
            out.ignored_fields += ignored
            return Reading(park, device, now_ns, values, reset, "collector")
        kind = type(ts)
        if kind is int:
            if not 0 < ts < _MAX_INT_TS:
                return None
        elif kind is not float and kind is not str:
            return None
        try:
            ts_ns = parse_ts(ts)
        except ValueError:
            return None
        if ts_ns > max_ts_ns or ts_ns < MIN_TS_NS:
            return None
        out.ignored_fields += ignored
        return Reading(park, device, ts_ns, values, reset, "device")

    def _reading(
        self, park: str, device: str, item: Any, now_ns: int, max_ts_ns: int, out: Decoded
    ) -> Reading | tuple[RejectReason, str]:
        if not isinstance(item, dict):
            return (
                RejectReason.INVALID_READING,
                f"a reading must be a JSON object, not {type(item).__name__}",
            )
        if "ts" in item and item["ts"] is None:
            return (
                RejectReason.INVALID_READING,
                "ts is null: leave ts out to have the arrival time stamped, or send a time",
            )
        for name, value in item.items():
            if type(value) is _Underflow:
                return (
                    RejectReason.OUT_OF_RANGE,
                    f"{name}: {_input_repr(value.literal)} is not zero but underflows to 0",
                )
        try:
            parsed = _ReadingIn.model_validate(item)
        except ValidationError as exc:
            return _first_error(exc)
        values: dict[str, float] = {}
        for name, value in item.items():
            if name in _KNOWN:
                if value is not None:
                    values[name] = float(value)
                continue
            if name in RESERVED_NAMES:
                continue
            # unknown fields: numbers are kept (docs/gateway-contract.md); anything else is
            # counted, not stored
            if (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and _EXTRA_NAME.fullmatch(name)
            ):
                try:
                    number = float(value)
                except OverflowError:  # a JSON integer beyond float range
                    return RejectReason.OUT_OF_RANGE, f"{name}: integer beyond ±{MAX_ABS_VALUE:g}"
                if not math.isfinite(number):
                    return RejectReason.NON_FINITE, f"{name}: not a finite number"
                values[name] = number
            else:
                out.ignored_fields += 1
        for name, value in values.items():
            if abs(value) > MAX_ABS_VALUE:
                return RejectReason.OUT_OF_RANGE, f"{name}: {value!r} is beyond ±{MAX_ABS_VALUE:g}"
        if not values and not parsed.reset:
            return (
                RejectReason.INVALID_READING,
                "no quantities: a reading needs at least one numeric field",
            )
        if parsed.ts is None:
            ts_ns, source = now_ns, "collector"
        else:
            raw_ts = item["ts"]  # the model made an integer a float: the unit needs the type
            try:
                ts_ns = parse_ts(raw_ts if type(raw_ts) is int else parsed.ts)
            except ValueError as exc:
                reason = RejectReason.INVALID_READING
                if "after 2100" in str(exc):
                    reason = RejectReason.OUT_OF_RANGE
                return reason, str(exc)
            source = "device"
            if ts_ns > max_ts_ns:
                ahead_s = (ts_ns - now_ns) / 1e9
                limit_s = self.limits.max_future_s
                return (
                    RejectReason.FUTURE_TIMESTAMP,
                    f"ts {parsed.ts!r} is {ahead_s:.0f} s in the future (limit {limit_s:.0f} s)",
                )
            if ts_ns < MIN_TS_NS:
                return (
                    RejectReason.OUT_OF_RANGE,
                    f"ts {parsed.ts!r} is before 2000-01-01 (gateway clock not set?)",
                )
        return Reading(park, device, ts_ns, values, parsed.reset, source)  # type: ignore[arg-type]
