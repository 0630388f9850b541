"""EMQ Neuron's MQTT upload JSON: one message per south node and group, many meters' tags.

Both of Neuron's upload formats are read: values-format
(`{"timestamp": ms, "node", "group", "values": {tag: v}, "errors": {tag: code}}`) and
tags-format (`"tags": [{"name", "value"} | {"name", "error"}]`); Neuron before 2.1 spelled
the keys `node_name`/`group_name`. A tag in `errors` that a device maps becomes a dead letter
with the tag's error code; its other quantities still count (docs/gateways.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.registry.models import Registry
from app.telemetry.decode import DecodeLimits, TelemetryDecoder, load_json
from app.telemetry.formats.base import Filters, FormatResult, emit, reject, scaled, too_large
from app.telemetry.formats.base import topic_matches as _matches
from app.telemetry.models import RejectReason


@dataclass(frozen=True, slots=True)
class _Mapped:
    """One device fed by a Neuron group: quantity → (tag, scale)."""

    park: str
    device: str
    quantities: tuple[tuple[str, str, float], ...]


def _index(registry: Registry) -> tuple[dict[tuple[str, str], list[_Mapped]], tuple[str, ...]]:
    groups: dict[tuple[str, str], list[_Mapped]] = {}
    filters: set[str] = set()
    for park in registry.parks:
        for device in park.devices:
            src = device.source
            if src is None or src.format != "neuron":
                continue
            assert src.node is not None and src.group is not None  # validated
            qs = tuple((name, q.tag or "", q.scale) for name, q in sorted(src.quantities.items()))
            groups.setdefault((src.node, src.group), []).append(_Mapped(park.id, device.id, qs))
            filters.add(src.topic_filter())
    return groups, tuple(sorted(filters))


def _tags(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """(values, errors) by tag, from either upload format; a string says what is wrong."""
    if "values" in doc or "errors" in doc:
        values, errors = doc.get("values", {}), doc.get("errors", {})
        if not isinstance(values, dict) or not isinstance(errors, dict):
            return "'values' and 'errors' must be objects keyed by tag"
        return values, errors
    tags = doc.get("tags")
    if not isinstance(tags, list):
        return "neither 'values'/'errors' (values-format) nor 'tags' (tags-format)"
    values, errors = {}, {}
    for tag in tags:
        if not isinstance(tag, dict) or not isinstance(tag.get("name"), str):
            return "a 'tags' element must be an object with a 'name'"
        if "error" in tag:
            errors[tag["name"]] = tag["error"]
        else:
            values[tag["name"]] = tag.get("value")
    return values, errors


class NeuronFormat:
    """Decodes Neuron group uploads for every device whose source is `format: neuron`."""

    name = "neuron"

    def __init__(self, registry: Registry, limits: DecodeLimits) -> None:
        self.limits = limits
        self.native = TelemetryDecoder(registry, limits)
        self.set_registry(registry)

    def set_registry(self, registry: Registry) -> None:
        self.native.registry = registry
        self._groups, self._filters = _index(registry)

    def filters(self) -> Filters:
        return Filters(shared=self._filters)

    def matches(self, topic: str) -> bool:
        return any(_matches(f, topic) for f in self._filters)

    def decode(self, topic: str, payload: bytes, now_ns: int) -> FormatResult:
        out = FormatResult(self.name)
        if too_large(out, self.limits, topic, payload, now_ns):
            return out
        try:
            doc = load_json(payload)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            return reject(
                out, now_ns, topic, payload, RejectReason.INVALID_JSON, f"not UTF-8 JSON: {why}"
            )
        if not isinstance(doc, dict):
            return reject(
                out,
                now_ns,
                topic,
                payload,
                RejectReason.INVALID_READING,
                f"a Neuron upload is a JSON object, not {type(doc).__name__}",
            )
        if "states" in doc and not {"values", "errors", "tags"} & doc.keys():
            out.unmapped = True  # Neuron's heartbeat on the same topic tree: no readings
            return out
        node = doc.get("node", doc.get("node_name"))
        group = doc.get("group", doc.get("group_name"))
        if not isinstance(node, str) or not isinstance(group, str):
            return reject(
                out,
                now_ns,
                topic,
                payload,
                RejectReason.INVALID_READING,
                "a Neuron upload needs 'node' and 'group' strings",
            )
        devices = self._groups.get((node, group))
        if not devices:
            return reject(
                out,
                now_ns,
                topic,
                payload,
                RejectReason.UNKNOWN_DEVICE,
                f"no device's source is Neuron node {node!r} group {group!r}",
            )
        tags = _tags(doc)
        if isinstance(tags, str):
            return reject(out, now_ns, topic, payload, RejectReason.INVALID_READING, tags)
        values, errors = tags
        ts = doc.get("timestamp")  # epoch ms; absent: the collector stamps arrival
        used = self._emit(
            out, devices, values, errors, ts, f"{node}/{group}", topic, payload, now_ns
        )
        out.ignored_fields += max(0, len(values) + len(errors) - used)
        return out

    def _emit(
        self,
        out: FormatResult,
        devices: list[_Mapped],
        values: dict[str, Any],
        errors: dict[str, Any],
        ts: Any,
        source: str,
        topic: str,
        payload: bytes,
        now_ns: int,
    ) -> int:
        """Readings (and gateway errors) of each device mapped to Neuron `source`
        (node/group); returns how many of the upload's tags were used."""
        used = 0
        for m in devices:
            found: dict[str, Any] = {}
            for quantity, tag, scale in m.quantities:
                if tag in errors:
                    used += 1
                    reject(
                        out,
                        now_ns,
                        topic,
                        payload,
                        RejectReason.GATEWAY_ERROR,
                        f"Neuron {source} tag {tag!r} ({quantity}): error code {errors[tag]!r}",
                        park=m.park,
                        device=m.device,
                    )
                elif tag in values:
                    used += 1
                    found[quantity] = scaled(values[tag], scale)
            if found:
                emit(
                    self.native,
                    out,
                    park=m.park,
                    device=m.device,
                    ts=ts,
                    values=found,
                    topic=topic,
                    payload=payload,
                    now_ns=now_ns,
                    where=f"Neuron {source} → {m.device}",
                )
        return used
