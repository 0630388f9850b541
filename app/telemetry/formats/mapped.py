"""Mapped JSON for other vendors' gateways: a path (or record name) per quantity.

Two shapes cover most vendor boxes (docs/gateways.md):

- `object`: one object per message, or an array of them, with a field per quantity, e.g.
  `{"time": "2026-11-20 08:00:00", "meter": "M-07", "EP_IMP": 123456}`; `match` picks the
  objects that belong to a device when many meters share a topic;
- `records`: an array of `{name, value, ts}` records, e.g.
  `[{"name": "M07.EP_IMP", "value": 123456, "ts": 1795046400000}, ...]`, possibly under a
  key of the message (`records_path`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from app.registry.models import Registry
from app.registry.sources import DeviceSource
from app.telemetry.decode import DecodeLimits, TelemetryDecoder, load_json
from app.telemetry.formats.base import (
    Filters,
    FormatResult,
    emit,
    reject,
    scaled,
    too_large,
    topic_matches,
)
from app.telemetry.models import RejectReason

_MISSING = object()
_HASHABLE = frozenset({int, float, str, bool, type(None)})


def compile_path(path: str) -> tuple[str, ...]:
    """A JSON pointer (`/a/0/b`, with `~1` and `~0` escapes) or a dotted path (`a.0.b`)."""
    if path.startswith("/"):
        return tuple(p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/"))
    return tuple(path.split("."))


def lookup(doc: Any, path: tuple[str, ...]) -> Any:
    """The value at `path`, or `_MISSING`."""
    for part in path:
        if isinstance(doc, dict):
            doc = doc.get(part, _MISSING)
        elif isinstance(doc, list) and part.isdecimal() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return _MISSING
        if doc is _MISSING:
            return doc
    return doc


def convert_ts(value: Any, ts_format: str, tz: ZoneInfo) -> Any:
    """A gateway timestamp as the native decoder reads it (RFC 3339, or epoch s/ms).

    Anything that does not convert is passed on unchanged, for the native decoder to reject
    with its usual reason.
    """
    if ts_format == "auto" or value is None:
        return value
    number = type(value) in (int, float)
    if ts_format == "epoch_s" and number:
        return value
    if ts_format == "epoch_ms" and number and abs(value) < 1e17:
        return value / 1000  # seconds: epoch ms of the 1970s would read as seconds
    if ts_format == "rfc3339":
        return value
    if "%" in ts_format and isinstance(value, str):
        try:
            local = datetime.strptime(value, ts_format)
        except ValueError:
            return value
        if local.tzinfo is None:
            local = local.replace(tzinfo=tz)
        return local.isoformat()
    return value


@dataclass(frozen=True, slots=True)
class _Mapped:
    """One device fed by a topic: its source compiled."""

    park: str
    device: str
    tz: ZoneInfo
    src: DeviceSource
    match: tuple[tuple[tuple[str, ...], str], ...]
    paths: tuple[tuple[str, tuple[str, ...], float], ...]
    ts: tuple[str, ...] | None


def _index(registry: Registry) -> dict[str, list[_Mapped]]:
    out: dict[str, list[_Mapped]] = {}
    for park in registry.parks:
        for device in park.devices:
            src = device.source
            if src is None or src.format != "json":
                continue
            paths = tuple(
                (name, compile_path(q.path) if q.path is not None else (q.tag or "",), q.scale)
                for name, q in sorted(src.quantities.items())
            )
            match = tuple((compile_path(p), v) for p, v in sorted(src.match.items()))
            ts = None if src.ts is None else compile_path(src.ts)
            out.setdefault(src.topic_filter(), []).append(
                _Mapped(park.id, device.id, park.tz, src, match, paths, ts)
            )
    return out


def _text(value: Any) -> str | None:
    """A field's value as the text `match` compares with; None when the field is absent."""
    if value is _MISSING:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return None


class MappedJsonFormat:
    """Decodes vendor JSON for every device whose source is `format: json`."""

    name = "json"

    def __init__(self, registry: Registry, limits: DecodeLimits) -> None:
        self.limits = limits
        self.native = TelemetryDecoder(registry, limits)
        self.set_registry(registry)

    def set_registry(self, registry: Registry) -> None:
        self.native.registry = registry
        self._topics = _index(registry)

    def filters(self) -> Filters:
        return Filters(shared=tuple(sorted(self._topics)))

    def matches(self, topic: str) -> bool:
        return topic in self._topics or any(topic_matches(f, topic) for f in self._topics)

    def decode(self, topic: str, payload: bytes, now_ns: int) -> FormatResult:
        out = FormatResult(self.name)
        devices = self._topics.get(topic)
        if devices is None:
            devices = [m for f, ms in self._topics.items() if topic_matches(f, topic) for m in ms]
        if not devices:
            return reject(
                out,
                now_ns,
                topic,
                payload,
                RejectReason.UNKNOWN_DEVICE,
                "no device's json source reads this topic",
            )
        if too_large(out, self.limits, topic, payload, now_ns):
            return out
        try:
            doc = load_json(payload)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            return reject(
                out, now_ns, topic, payload, RejectReason.INVALID_JSON, f"not UTF-8 JSON: {why}"
            )
        objects = [m for m in devices if m.src.layout == "object"]
        records = [m for m in devices if m.src.layout == "records"]
        if objects:
            self._objects(out, doc, objects, topic, payload, now_ns)
        if records:
            self._records(out, doc, records, topic, payload, now_ns)
        return out

    def _objects(
        self,
        out: FormatResult,
        doc: Any,
        devices: list[_Mapped],
        topic: str,
        payload: bytes,
        now_ns: int,
    ) -> None:
        items = doc if isinstance(doc, list) else [doc]
        if not items or len(items) > self.limits.max_array_len:
            reject(
                out,
                now_ns,
                topic,
                payload,
                RejectReason.INVALID_READING if not items else RejectReason.TOO_LARGE,
                f"array of {len(items)} objects (1 to {self.limits.max_array_len} expected)",
            )
            return
        for index, item in enumerate(items):
            where = "" if len(items) == 1 and not isinstance(doc, list) else f"element {index}: "
            taken = False
            for m in devices:
                if any(_text(lookup(item, p)) != v for p, v in m.match):
                    continue
                taken = True
                values: dict[str, Any] = {}
                for name, path, scale in m.paths:
                    value = lookup(item, path)
                    if value is not _MISSING:
                        values[name] = scaled(value, scale)
                if not values:
                    reject(
                        out,
                        now_ns,
                        topic,
                        payload,
                        RejectReason.INVALID_READING,
                        f"{where}none of {m.device}'s mapped fields is present",
                        park=m.park,
                        device=m.device,
                    )
                    continue
                ts = None
                if m.ts is not None:
                    ts = convert_ts(lookup(item, m.ts), m.src.ts_format, m.tz)
                    if ts is _MISSING:
                        ts = None
                emit(
                    self.native,
                    out,
                    park=m.park,
                    device=m.device,
                    ts=ts,
                    values=values,
                    topic=topic,
                    payload=payload,
                    now_ns=now_ns,
                    where=f"{where}→ {m.device}",
                )
            if not taken:
                reject(
                    out,
                    now_ns,
                    topic,
                    payload,
                    RejectReason.UNKNOWN_DEVICE,
                    f"{where}no device's json source matches this object",
                )

    def _records(
        self,
        out: FormatResult,
        doc: Any,
        devices: list[_Mapped],
        topic: str,
        payload: bytes,
        now_ns: int,
    ) -> None:
        # the devices of one topic share the records' location and keys (the first one's)
        first = devices[0].src
        rows = doc if first.records_path is None else lookup(doc, compile_path(first.records_path))
        if not isinstance(rows, list) or not rows or len(rows) > self.limits.max_array_len:
            reject(
                out,
                now_ns,
                topic,
                payload,
                RejectReason.INVALID_READING,
                f"records: expected an array of 1 to {self.limits.max_array_len}"
                f" {{{first.name_key}, {first.value_key}}} objects",
            )
            return
        by_name: dict[str, list[tuple[_Mapped, str, float]]] = {}
        for m in devices:
            for quantity, path, scale in m.paths:
                by_name.setdefault(path[0], []).append((m, quantity, scale))
        grouped: dict[tuple[int, type, Any], tuple[_Mapped, Any, dict[str, Any]]] = {}
        for index, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get(first.name_key), str):
                reject(
                    out,
                    now_ns,
                    topic,
                    payload,
                    RejectReason.INVALID_READING,
                    f"record {index}: not an object with a string {first.name_key!r}",
                )
                continue
            targets = by_name.get(row[first.name_key])
            if targets is None:
                out.ignored_fields += 1
                continue
            for m, quantity, scale in targets:
                ts = convert_ts(row.get(m.src.ts or "ts"), m.src.ts_format, m.tz)
                # one reading per device and instant; a JSON list or object as ts is unhashable
                kind = type(ts)
                key = (id(m), kind, ts if kind in _HASHABLE else repr(ts))
                slot = grouped.setdefault(key, (m, ts, {}))
                slot[2][quantity] = scaled(row.get(m.src.value_key), scale)
        for m, ts, values in grouped.values():
            emit(
                self.native,
                out,
                park=m.park,
                device=m.device,
                ts=ts,
                values=values,
                topic=topic,
                payload=payload,
                now_ns=now_ns,
                where=f"records → {m.device}",
            )
