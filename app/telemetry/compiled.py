"""The native format's compiled tier: the plain case decoded and validated in C by msgspec.

A payload whose readings name only the contract's quantities (docs/gateway-contract.md), each a
number within its bounds, with an optional `ts` and `reset`, is parsed and checked in one pass
by a msgspec decoder generated from the same bounds table as the strict pydantic model. That is
what gateways send nearly always, and it costs about a tenth of parsing with `json` and checking
in Python. Anything else (an unknown or reserved field, a wrong type, a bound crossed, `"ts":
null`, a literal that may underflow, an empty or oversized array, a ts that is not plainly in
range) makes this tier decline, and the Python fast path or the pydantic reference decides,
so every dead letter and its detail still comes from one place (tests/test_decode_fastpath.py
checks that the tiers agree on generated payloads).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

import msgspec

from app.telemetry.models import Reading

#: Per known quantity, the closed range a value must lie in (docs/gateway-contract.md §3).
Bounds = dict[str, tuple[float, float]]

_Declined = (msgspec.DecodeError, msgspec.ValidationError)
#: epoch integers read as seconds below this, as milliseconds from it (`decode.parse_ts`)
_MS_FROM = 10**11
_MS_UNTIL = 10**14
#: parsed RFC 3339 strings: gateways stamp many devices with the same instant
_TS_CACHE_MAX = 4096
#: a fraction this long may underflow to 0.0 (as may any negative exponent): a dead letter
UNDERFLOW_ZEROS = b"0" * 300


@lru_cache(maxsize=4)
def _decoder(bounds: tuple[tuple[str, float, float], ...]) -> msgspec.json.Decoder[Any]:
    struct = _struct({name: (low, high) for name, low, high in bounds})
    return msgspec.json.Decoder(struct | list[struct])  # type: ignore[valid-type]


def _struct(bounds: Bounds) -> type[msgspec.Struct]:
    """A Struct type with one optional, bounded float field per known quantity.

    `forbid_unknown_fields`: an extra or reserved field is the Python tiers' call (extras are
    kept, reserved names dropped and counted). `omit_defaults`: `to_builtins` then gives just
    the fields that were sent (a known quantity sent as null is left out, as the contract says).
    """
    fields: list[tuple[str, Any, Any]] = [
        ("ts", int | float | str | msgspec.UnsetType, msgspec.UNSET),
        ("reset", bool, False),
    ]
    for name, (low, high) in sorted(bounds.items()):
        fields.append((name, Annotated[float, msgspec.Meta(ge=low, le=high)] | None, None))
    return msgspec.defstruct(
        "ReadingPayload", fields, forbid_unknown_fields=True, omit_defaults=True, gc=False
    )


class CompiledNative:
    """Decodes plain native payloads into readings; None where another tier must decide."""

    def __init__(
        self, bounds: Bounds, parse_ts: Any, min_ts_ns: int, max_epoch_ns: int, max_array: int
    ) -> None:
        self._decoder = _decoder(tuple((n, lo, hi) for n, (lo, hi) in sorted(bounds.items())))
        self._to_builtins = msgspec.to_builtins
        self._parse_ts = parse_ts
        self._min_ts_ns = min_ts_ns
        self._max_epoch_ns = max_epoch_ns
        self._max_array = max_array
        self._ts_cache: dict[str, int | None] = {}

    def readings(
        self, park: str, device: str, payload: bytes, now_ns: int, max_ts_ns: int
    ) -> list[Reading] | None:
        """Every reading of `payload`, or None (nothing decided: use the other tiers)."""
        # a literal that underflows to 0.0 (`1e-400`) is a dead letter; msgspec would read 0
        # (`find`, not `in`: on bytes it takes a slow path, ~2x the cost)
        if (payload.find(b"-") >= 0 and (payload.find(b"e-") >= 0 or payload.find(b"E-") >= 0)) or (
            len(payload) >= 300 and payload.find(UNDERFLOW_ZEROS) >= 0
        ):
            return None
        try:
            doc = self._decoder.decode(payload)
        except _Declined:
            return None
        if type(doc) is list:
            if not doc or len(doc) > self._max_array:
                return None
            out = []
            for item in doc:
                reading = self._reading(park, device, item, now_ns, max_ts_ns)
                if reading is None:
                    return None
                out.append(reading)
            return out
        reading = self._reading(park, device, doc, now_ns, max_ts_ns)
        return None if reading is None else [reading]

    def _reading(
        self, park: str, device: str, item: Any, now_ns: int, max_ts_ns: int
    ) -> Reading | None:
        values: dict[str, Any] = self._to_builtins(item)
        ts = values.pop("ts", None)
        reset = values.pop("reset", False)
        if not values and not reset:
            return None  # "no quantities": the reference's dead letter
        if ts is None:
            return Reading(park, device, now_ns, values, reset, "collector")
        ts_ns = self._ts_ns(ts)
        if ts_ns is None or ts_ns > max_ts_ns or ts_ns < self._min_ts_ns:
            return None
        return Reading(park, device, ts_ns, values, reset, "device")

    def _ts_ns(self, ts: int | float | str) -> int | None:
        """`decode.parse_ts` with the common integer case inline; None where it refuses."""
        if type(ts) is int:
            if 0 < ts < _MS_FROM:
                ns = ts * 1_000_000_000
            elif _MS_FROM <= ts < _MS_UNTIL:
                ns = ts * 1_000_000
            else:
                return None
            return ns if ns < self._max_epoch_ns else None
        if type(ts) is str:
            cache = self._ts_cache
            if ts in cache:
                return cache[ts]
            got = self._parsed(ts)
            if len(cache) >= _TS_CACHE_MAX:
                cache.clear()
            cache[ts] = got
            return got
        return self._parsed(ts)

    def _parsed(self, ts: float | str) -> int | None:
        try:
            ns: int = self._parse_ts(ts)
        except ValueError:
            return None
        return ns
