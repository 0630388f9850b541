"""InfluxDB layout of Lingtan data: domain objects <-> line protocol and InfluxQL result rows."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from app.intervals.models import IntervalEnergy
from app.storage.base import WriteBatch
from app.storage.lineprotocol import (
    LineProtocolError,
    escape_key,
    escape_string,
    format_float,
    representable_name,
)
from app.telemetry.models import DeadLetter, Reading, RejectReason

log = logging.getLogger(__name__)

READING = "reading"
INTERVAL = "interval_energy"
DEADLETTER = "deadletter"
UNKNOWN_PARK = "_unknown"
INVALID_PARK = "_invalid"

# Value names that would collide with a tag, a bookkeeping field or influx's own `time` (which
# influxd silently drops) are stored with this prefix; so is any name already starting with it,
# which keeps the mapping one-to-one and the round trip lossless.
VALUE_PREFIX = "__"
_RESERVED = frozenset(
    {
        "",
        "time",
        "park",
        "device",
        "role",
        "reason",
        "reset",
        "ts_source",
        "estimated",
        "flags",
        "duration_s",
    }
)

_value_key_cache: dict[str, str] = {}


def value_field_key(name: str) -> str:
    """Escaped field key for a value name (reserved names get `VALUE_PREFIX`)."""
    try:
        return _value_key_cache[name]
    except KeyError:
        pass
    stored = VALUE_PREFIX + name if name in _RESERVED or name.startswith(VALUE_PREFIX) else name
    out = escape_key(stored)
    if len(_value_key_cache) > 65536:
        _value_key_cache.clear()
    _value_key_cache[name] = out
    return out


def value_name(field_key: str) -> str:
    """Inverse of `value_field_key` (on the unescaped column name)."""
    return field_key[len(VALUE_PREFIX) :] if field_key.startswith(VALUE_PREFIX) else field_key


def _values_text(values: dict[str, float]) -> str:
    """`key=value,...` of a reading's or interval's values: the hot loop of every write.

    Floats are written as Python's shortest repr (`12.0` stays `12.0`: still a float, never
    the `i` of an integer); a non-finite value raises LineProtocolError, found by their sum
    (inf or NaN make it non-finite) so the common case costs one addition per value.
    """
    keys = _value_key_cache
    try:
        text = ",".join([f"{keys[k]}={v!r}" for k, v in values.items()])
    except KeyError:  # a name not seen yet (or the cache was just cleared)
        text = ",".join([f"{value_field_key(k)}={v!r}" for k, v in values.items()])
    total = sum(values.values())
    if total - total != 0.0:  # inf or NaN, or finite values whose sum overflowed
        for v in values.values():
            format_float(v)  # raises with the reason
    return text


_prefix_cache: dict[tuple[str, ...], str] = {}


def _prefix(measurement: str, *tag_pairs: str) -> str:
    """`measurement,k=v,... ` for tags given as k1, v1, k2, v2 ... already in key order."""
    key = (measurement, *tag_pairs)
    try:
        return _prefix_cache[key]
    except KeyError:
        pass
    parts = [measurement]
    for i in range(0, len(tag_pairs), 2):
        parts.append("," + tag_pairs[i] + "=" + escape_key(tag_pairs[i + 1]))
    out = "".join(parts) + " "
    if len(_prefix_cache) > 65536:
        _prefix_cache.clear()
    _prefix_cache[key] = out
    return out


def reading_line(r: Reading) -> str:
    return _reading_line(r)


_reading_prefix: dict[str, str] = {}


def interval_line(iv: IntervalEnergy) -> str:
    fields = [_values_text(iv.values)] if iv.values else []
    fields.append("estimated=" + ("true" if iv.estimated else "false"))
    fields.append("flags=" + escape_string(",".join(iv.flags)))
    fields.append("duration_s=" + format_float((iv.end_ns - iv.start_ns) / 1e9))
    prefix = _prefix(INTERVAL, "device", iv.device, "park", iv.park, "role", iv.role)
    return prefix + ",".join(fields) + f" {iv.start_ns}"


def _park_tag_ok(park: str) -> bool:
    return park not in (UNKNOWN_PARK, INVALID_PARK) and representable_name(park)


def deadletter_line(d: DeadLetter, ts_ns: int) -> str:
    """A dead letter at `ts_ns` (its received time, possibly nudged to be unique)."""
    fields = [
        "detail=" + escape_string(d.detail),
        "raw_b64=" + escape_string(base64.b64encode(d.raw).decode("ascii")),
        "raw_len=" + format_float(float(len(d.raw))),
        "topic=" + escape_string(d.topic),
    ]
    if d.device is not None:
        fields.append("device=" + escape_string(d.device))
    if d.park is None:
        park_tag = UNKNOWN_PARK
    elif _park_tag_ok(d.park):
        park_tag = d.park
    else:
        # A park taken from a malformed topic may not be a valid tag: keep it as a field.
        park_tag = INVALID_PARK
        fields.append("park_raw=" + escape_string(d.park))
    fields.sort()
    prefix = _prefix(DEADLETTER, "park", park_tag, "reason", d.reason.value)
    return prefix + ",".join(fields) + f" {ts_ns}"


def deadletter_park_tag(park: str | None) -> str:
    """The `park` tag value a dead letter of `park` is stored under."""
    if park is None:
        return UNKNOWN_PARK
    return park if _park_tag_ok(park) else INVALID_PARK


def reading_lines(readings: Iterable[Reading]) -> list[str]:
    """One line per reading (raises LineProtocolError on one without values).

    The collector's hottest loop: `_values_text` is inlined for the common reading (values
    already named, from a device clock, no reset).
    """
    prefixes = _reading_prefix
    keys = _value_key_cache
    out: list[str] = []
    for r in readings:
        prefix = prefixes.get(r.device + "\0" + r.park)  # "\0" is in no valid tag
        values = r.values
        if prefix is None or r.reset or r.ts_source != "device" or not values:
            out.append(_reading_line(r))
            continue
        try:
            fields = ",".join([f"{keys[k]}={v!r}" for k, v in values.items()])
        except KeyError:
            out.append(_reading_line(r))
            continue
        total = sum(values.values())
        if total - total != 0.0:
            _values_text(values)  # raises: inf or NaN
        out.append(f"{prefix}{fields} {r.ts_ns}")
    return out


def _reading_line(r: Reading) -> str:
    prefix = _prefix(READING, "device", r.device, "park", r.park)
    if len(_reading_prefix) > 65536:
        _reading_prefix.clear()
    _reading_prefix[r.device + "\0" + r.park] = prefix
    fields = [_values_text(r.values)] if r.values else []
    if r.reset:
        fields.append("reset=true")
    if r.ts_source == "collector":
        fields.append('ts_source="collector"')
    if not fields:
        raise LineProtocolError(f"reading of {r.park}/{r.device} at {r.ts_ns} has no values")
    return prefix + ",".join(fields) + f" {r.ts_ns}"


def iter_lines(batch: WriteBatch) -> Iterator[str]:
    """Lines for every point in `batch` (raises LineProtocolError on an unencodable point)."""
    yield from reading_lines(batch.readings)
    for iv in batch.intervals:
        yield interval_line(iv)
    # Influx keeps one point per series and timestamp: two dead letters of the same park and
    # reason received in the same nanosecond would overwrite each other, so nudge later ones.
    used: set[tuple[str, str, int]] = set()
    for d in batch.deadletters:
        park_tag = deadletter_park_tag(d.park)
        ts = d.received_ns
        while (park_tag, d.reason.value, ts) in used:
            ts += 1
        used.add((park_tag, d.reason.value, ts))
        yield deadletter_line(d, ts)


def batch_lines(batch: WriteBatch) -> list[str]:
    return list(iter_lines(batch))


# --- reverse mapping: InfluxQL JSON (epoch=ns) rows -> domain objects ---------------------

_READING_META = frozenset({"time", "park", "device", "reset", "ts_source"})
_INTERVAL_META = frozenset({"time", "park", "device", "role", "estimated", "flags", "duration_s"})

Row = Sequence[Any]


def _index(columns: Sequence[str]) -> dict[str, int]:
    return {c: i for i, c in enumerate(columns)}


def _number(v: Any) -> float | None:
    """A stored value as a reading's quantity, or None for what no Lingtan writer stores
    there (a string or boolean field written by another tool): skipped, so one foreign
    point cannot make a device's history unreadable (and its collector redeliver forever)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _numbers(row: Row, value_cols: Sequence[tuple[int, str]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, name in value_cols:
        x = row[i]
        if x is None:
            continue
        v = _number(x)
        if v is None:
            if name not in _FOREIGN_WARNED:
                _FOREIGN_WARNED.add(name)
                log.warning("stored field %r holds a non-number (%r): ignored", name, x)
            continue
        out[name] = v
    return out


_FOREIGN_WARNED: set[str] = set()


def readings_from_rows(
    columns: Sequence[str], rows: Sequence[Row], tags: Mapping[str, str] | None = None
) -> list[Reading]:
    """Readings of result rows; `tags` are the series' (GROUP BY) tags, not in the columns."""
    park_tag = tags.get("park", "") if tags else ""
    device_tag = tags.get("device", "") if tags else ""
    idx = _index(columns)
    ti, pi, di = idx["time"], idx.get("park"), idx.get("device")
    ri, si = idx.get("reset"), idx.get("ts_source")
    value_cols = [(i, value_name(c)) for c, i in idx.items() if c not in _READING_META]
    out: list[Reading] = []
    for row in rows:
        values = _numbers(row, value_cols)
        out.append(
            Reading(
                park=(row[pi] if pi is not None else None) or park_tag,
                device=(row[di] if di is not None else None) or device_tag,
                ts_ns=int(row[ti]),
                values=values,
                reset=bool(row[ri]) if ri is not None and row[ri] is not None else False,
                ts_source="collector" if si is not None and row[si] == "collector" else "device",
            )
        )
    return out


def intervals_from_rows(columns: Sequence[str], rows: Sequence[Row]) -> list[IntervalEnergy]:
    idx = _index(columns)
    ti, pi, di, oi = idx["time"], idx.get("park"), idx.get("device"), idx.get("role")
    ei, fi, ui = idx.get("estimated"), idx.get("flags"), idx.get("duration_s")
    value_cols = [(i, value_name(c)) for c, i in idx.items() if c not in _INTERVAL_META]
    out: list[IntervalEnergy] = []
    for row in rows:
        start_ns = int(row[ti])
        duration_s = row[ui] if ui is not None else None
        flags = row[fi] if fi is not None else None
        out.append(
            IntervalEnergy(
                park=(row[pi] if pi is not None else None) or "",
                device=(row[di] if di is not None else None) or "",
                role=(row[oi] if oi is not None else None) or "",
                start_ns=start_ns,
                end_ns=start_ns + (round(float(duration_s) * 1e9) if duration_s else 0),
                values=_numbers(row, value_cols),
                estimated=bool(row[ei]) if ei is not None and row[ei] is not None else False,
                flags=tuple(flags.split(",")) if flags else (),
            )
        )
    return out


def _reason(value: str | None) -> RejectReason:
    try:
        return RejectReason(value or "")
    except ValueError:
        # A reason written by a newer version: keep the row rather than fail the whole query.
        return RejectReason.INVALID_READING


def deadletters_from_rows(columns: Sequence[str], rows: Sequence[Row]) -> list[DeadLetter]:
    idx = _index(columns)

    def col(row: Row, name: str) -> Any:
        i = idx.get(name)
        return None if i is None else row[i]

    out: list[DeadLetter] = []
    for row in rows:
        park_tag = col(row, "park")
        park_raw = col(row, "park_raw")
        if park_raw is not None:
            park: str | None = park_raw
        elif park_tag in (None, "", UNKNOWN_PARK):
            park = None
        else:
            park = park_tag
        raw_b64 = col(row, "raw_b64")
        out.append(
            DeadLetter(
                received_ns=int(col(row, "time")),
                topic=col(row, "topic") or "",
                park=park,
                device=col(row, "device"),
                reason=_reason(col(row, "reason")),
                detail=col(row, "detail") or "",
                raw=base64.b64decode(raw_b64) if raw_b64 else b"",
            )
        )
    return out
