# Long module: Sparkplug B is one stateful protocol (BIRTH aliases, DEATH, rebirth).
"""Sparkplug B 3.0: `spBv1.0/{group}/{type}/{edge}[/{device}]` with protobuf payloads.

What a host application must do to read an edge node, and no more: BIRTHs announce metric
names, aliases and datatypes; DATA messages are read through those aliases; `seq` gaps are
counted; NDEATH (matching the NBIRTH's `bdSeq`) and DDEATH mark the node's or device's
metrics offline and forget their aliases; a DATA metric whose alias no BIRTH announced is a
dead letter and makes the collector ask the edge node for a rebirth (an NCMD
`Node Control/Rebirth` = true), at most once per `REBIRTH_HOLDOFF_S` per node.

Payloads are decoded with the Sparkplug protobuf schema shipped by `pysparkplug` (Eclipse
Tahu's `sparkplug_b.proto`, Apache-2.0 package); its typed `DataType` turns Sparkplug's
unsigned wire integers back into signed values (docs/gateways.md).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.registry.models import Registry
from app.telemetry.decode import DecodeLimits, TelemetryDecoder
from app.telemetry.formats.base import (
    Command,
    Filters,
    FormatResult,
    emit,
    reject,
    scaled,
    too_large,
)
from app.telemetry.models import RejectReason

NAMESPACE = "spBv1.0"
#: Message types a host application reads (commands and STATE are other clients' business).
READ_TYPES = ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH")
_NODE_TYPES = frozenset({"NBIRTH", "NDATA", "NDEATH"})
_STATE_TYPES = frozenset({"NBIRTH", "NDEATH", "DBIRTH", "DDEATH"})
#: Don't ask the same edge node for a rebirth more often than this.
REBIRTH_HOLDOFF_S = 10.0
REBIRTH_METRIC = "Node Control/Rebirth"
#: The protobuf side (`sparkplug_codec`), imported once the registry maps a device here
_CODEC: dict[str, Any] = {}
#: Signed integer types' decoders by type number (filled from the codec when it loads)
_SIGNED: dict[int, Callable[[Any], Any]] = {}
_FLOAT32 = struct.Struct("<f")


def _float32(value: float) -> float:
    """A float32's shortest decimal as a float (1.1f is 1.1, not 1.100000023841858)."""
    packed = _FLOAT32.pack(value)
    for digits in range(6, 10):
        shortest = float(f"{value:.{digits}g}")
        if _FLOAT32.pack(shortest) == packed:
            return shortest
    return value


@dataclass(slots=True)
class _Aliases:
    """What one BIRTH announced: alias → name, name → datatype; and whether it is online."""

    names: dict[int, str] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    online: bool = True


@dataclass(slots=True)
class _Node:
    """An edge node as seen through its messages."""

    bd_seq: int | None = None
    seq: int | None = None
    node: _Aliases = field(default_factory=lambda: _Aliases(online=False))
    devices: dict[str, _Aliases] = field(default_factory=dict)
    last_rebirth_ns: int | None = None


@dataclass(frozen=True, slots=True)
class _Mapped:
    """One Lingtan device fed by a Sparkplug node or device: metric → [(quantity, scale)]."""

    park: str
    device: str
    metrics: dict[str, list[tuple[str, float]]]


_Key = tuple[str, str, str | None]


def _index(registry: Registry) -> dict[_Key, list[_Mapped]]:
    out: dict[_Key, list[_Mapped]] = {}
    for park in registry.parks:
        for device in park.devices:
            src = device.source
            if src is None or src.format != "sparkplug":
                continue
            assert src.group is not None and src.edge is not None  # validated
            metrics: dict[str, list[tuple[str, float]]] = {}
            for quantity, q in sorted(src.quantities.items()):
                metrics.setdefault(q.metric or "", []).append((quantity, q.scale))
            key = (src.group, src.edge, src.device)
            out.setdefault(key, []).append(_Mapped(park.id, device.id, metrics))
    return out


def _codec() -> Any:
    """pysparkplug, imported on first need: a collector whose registry maps no device to
    Sparkplug never pays for it (docs/performance.md, "Collector start-up")."""
    if not _CODEC:
        from app.telemetry.formats import sparkplug_codec

        _SIGNED.update(sparkplug_codec.SIGNED)
        _CODEC["module"] = sparkplug_codec
    return _CODEC["module"]


def rebirth_request(group: str, edge: str, now_ms: int) -> Command:
    """The NCMD asking an edge node to publish its NBIRTH and DBIRTHs again."""
    payload = _codec().rebirth_payload(REBIRTH_METRIC, now_ms)
    return Command(f"{NAMESPACE}/{group}/NCMD/{edge}", payload, qos=0)


def _valid_topic(parts: list[str], kind: str) -> bool:
    """spBv1.0/{group}/{N*}/{edge} or spBv1.0/{group}/{D*}/{edge}/{device}, none empty."""
    return (
        len(parts) in (4, 5)
        and parts[0] == NAMESPACE
        and kind in READ_TYPES
        and (len(parts) == 4) == (kind in _NODE_TYPES)
        and all(parts[1:])
    )


def _ask_rebirth(out: FormatResult, node: _Node, group: str, edge: str, now_ns: int) -> None:
    """Ask the edge node to publish its BIRTHs again (an unknown alias), at most once per
    REBIRTH_HOLDOFF_S."""
    last = node.last_rebirth_ns
    if last is None or now_ns - last >= REBIRTH_HOLDOFF_S * 1e9:
        node.last_rebirth_ns = now_ns
        out.commands.append(rebirth_request(group, edge, now_ns // 1_000_000))


class SparkplugFormat:
    """A Sparkplug B host application's reading side, for the devices the registry maps."""

    name = "sparkplug"

    def __init__(self, registry: Registry, limits: DecodeLimits) -> None:
        self.limits = limits
        self.native = TelemetryDecoder(registry, limits)
        self.nodes: dict[tuple[str, str], _Node] = {}
        #: bumped whenever a BIRTH or DEATH changes what the aliases mean (for `export_state`)
        self.version = 0
        self.set_registry(registry)

    def set_registry(self, registry: Registry) -> None:
        self.native.registry = registry
        self._mapped = _index(registry)
        self._targets: dict[int, dict[str, list[tuple[int, str, float]]]] = {}
        self._groups = tuple(sorted({k[0] for k in self._mapped}))
        self._edges = {k[:2] for k in self._mapped}
        #: the protobuf parser; only mapped edge nodes' payloads are ever parsed
        self._parse: Callable[[bytes], Any] | None = (
            _codec().Payload.FromString if self._edges else None
        )

    def filters(self) -> Filters:
        # every collector of a share group needs the BIRTHs and DEATHs (aliases, online)
        shared = [f"{NAMESPACE}/{g}/{t}/#" for g in self._groups for t in ("NDATA", "DDATA")]
        unshared = [
            f"{NAMESPACE}/{g}/{t}/#"
            for g in self._groups
            for t in ("NBIRTH", "DBIRTH", "NDEATH", "DDEATH")
        ]
        return Filters(shared=tuple(shared), unshared=tuple(unshared))

    def matches(self, topic: str) -> bool:
        return topic.startswith(NAMESPACE + "/")

    def export_state(self) -> dict[str, Any]:
        """The edge nodes' aliases, datatypes, `bdSeq`/`seq` and online flags, as JSON data.

        Kept on disk by the collector so that after a restart the DATA messages the broker
        queued meanwhile are read with the aliases of the BIRTHs they follow.
        """

        def aliases(a: _Aliases) -> dict[str, Any]:
            return {
                "names": {str(k): v for k, v in a.names.items()},
                "types": a.types,
                "online": a.online,
            }

        return {
            "version": 1,
            "nodes": [
                {
                    "group": group,
                    "edge": edge,
                    "bd_seq": node.bd_seq,
                    "seq": node.seq,
                    "node": aliases(node.node),
                    "devices": {d: aliases(a) for d, a in node.devices.items()},
                }
                for (group, edge), node in self.nodes.items()
            ],
        }

    def import_state(self, data: dict[str, Any]) -> None:
        """Restore what `export_state` returned (raises ValueError/KeyError/TypeError if not)."""
        if data.get("version") != 1:
            raise ValueError(f"unknown Sparkplug state version {data.get('version')!r}")

        def aliases(d: dict[str, Any]) -> _Aliases:
            return _Aliases(
                names={int(k): str(v) for k, v in d["names"].items()},
                types={str(k): int(v) for k, v in d["types"].items()},
                online=bool(d["online"]),
            )

        nodes: dict[tuple[str, str], _Node] = {}
        for n in data["nodes"]:
            nodes[(str(n["group"]), str(n["edge"]))] = _Node(
                bd_seq=n["bd_seq"],
                seq=n["seq"],
                node=aliases(n["node"]),
                devices={str(d): aliases(a) for d, a in n["devices"].items()},
            )
        self.nodes = nodes

    def offline(self) -> list[tuple[str, str]]:
        """(park, device) of mapped devices whose node or device is not online (DEATH seen or
        no BIRTH yet)."""
        out: list[tuple[str, str]] = []
        for (group, edge, dev), mapped in self._mapped.items():
            node = self.nodes.get((group, edge))
            if node is None or not node.node.online:
                out.extend((m.park, m.device) for m in mapped)
                continue
            aliases = node.node if dev is None else node.devices.get(dev)
            if aliases is None or not aliases.online:
                out.extend((m.park, m.device) for m in mapped)
        return out

    def decode(self, topic: str, payload: bytes, now_ns: int) -> FormatResult:
        out = FormatResult(self.name)
        parts = topic.split("/")
        kind = parts[2] if len(parts) > 2 else ""
        if not _valid_topic(parts, kind):
            return reject(
                out,
                now_ns,
                topic,
                payload,
                RejectReason.BAD_TOPIC,
                "topic must be spBv1.0/{group}/{NBIRTH|NDATA|NDEATH}/{edge}"
                " or spBv1.0/{group}/{DBIRTH|DDATA|DDEATH}/{edge}/{device}",
            )
        if too_large(out, self.limits, topic, payload, now_ns):
            return out
        group, edge = parts[1], parts[3]
        device = parts[4] if len(parts) == 5 else None
        if (group, edge) not in self._edges:
            # an edge node no device is mapped to: its state is not kept either (a later
            # registry edit gets its aliases through a rebirth request)
            out.unmapped = True
            return out
        assert self._parse is not None  # (group, edge) is mapped
        try:
            msg: Any = self._parse(payload)
        except Exception as exc:  # protobuf's DecodeError, or worse on hostile bytes
            return reject(
                out,
                now_ns,
                topic,
                payload,
                RejectReason.INVALID_READING,
                f"not a Sparkplug B payload: {exc}",
            )
        node = self.nodes.get((group, edge))
        if kind in _STATE_TYPES:
            self.version += 1
        if kind == "NBIRTH":
            node = self.nodes[(group, edge)] = _Node()
            node.node = self._birth(msg)
            node.bd_seq = self._bd_seq(msg)
            node.seq = msg.seq if msg.HasField("seq") else None
        elif kind == "NDEATH":
            bd_seq = self._bd_seq(msg)
            if node is not None and (node.bd_seq is None or bd_seq in (None, node.bd_seq)):
                node.node = _Aliases(online=False)
                for dev in node.devices.values():
                    dev.online = False
                    dev.names.clear()
            out.unmapped = not self._is_mapped(group, edge, None)
            return out  # a stale NDEATH (an older session's will) changes nothing
        else:
            if node is None:
                node = self.nodes[(group, edge)] = _Node()
            out.seq_gaps = self._sequence(node, msg)
            if kind == "DBIRTH":
                assert device is not None
                node.devices[device] = self._birth(msg)
            elif kind == "DDEATH":
                assert device is not None
                node.devices[device] = _Aliases(online=False)
                out.unmapped = not self._is_mapped(group, edge, device)
                return out
        mapped = self._mapped.get((group, edge, device))
        if not mapped:
            # a BIRTH of an edge node whose devices are mapped was needed (aliases, online)
            out.unmapped = not (kind == "NBIRTH" and self._is_mapped(group, edge, None))
            return out
        aliases = node.node if device is None else node.devices.get(device)
        self._readings(out, msg, mapped, aliases, topic, payload, now_ns)
        if any(d.reason is RejectReason.UNKNOWN_ALIAS for d in out.deadletters):
            _ask_rebirth(out, node, group, edge, now_ns)
        return out

    def _is_mapped(self, group: str, edge: str, device: str | None) -> bool:
        if device is not None:
            return (group, edge, device) in self._mapped
        return (group, edge) in self._edges

    @staticmethod
    def _birth(msg: Any) -> _Aliases:
        births = _Aliases()
        for m in msg.metrics:
            if m.HasField("name"):
                if m.HasField("alias"):
                    births.names[m.alias] = m.name
                births.types[m.name] = m.datatype
        return births

    @staticmethod
    def _bd_seq(msg: Any) -> int | None:
        for m in msg.metrics:
            if m.name == "bdSeq":
                return int(m.long_value or m.int_value)
        return None

    @staticmethod
    def _sequence(node: _Node, msg: Any) -> int:
        """How many `seq` numbers were skipped before this message (0-255, wrapping)."""
        if not msg.HasField("seq"):
            return 0
        seq = int(msg.seq) % 256
        last, node.seq = node.seq, seq
        if last is None or seq == last:  # first seen, or a redelivery of the last one
            return 0
        return (seq - last - 1) % 256

    def _readings(
        self,
        out: FormatResult,
        msg: Any,
        mapped: list[_Mapped],
        aliases: _Aliases | None,
        topic: str,
        payload: bytes,
        now_ns: int,
    ) -> None:
        default_ts = msg.timestamp if msg.HasField("timestamp") else None
        by_name = self._by_name(mapped)
        # (index into mapped, ts) → quantity → value
        found: dict[tuple[int, int | None], dict[str, Any]] = {}
        unknown: list[int] = []
        used = 0
        names = aliases.names if aliases is not None else {}
        for m in msg.metrics:
            # plain attribute reads (cheaper than HasField on upb messages): an unset name is
            # "", an unset timestamp 0 (never a valid time either)
            name = m.name or (names.get(m.alias) if m.HasField("alias") else None)
            if name is None:
                unknown.append(m.alias)
                continue
            if m.is_null:
                continue
            targets = by_name.get(name)
            if targets is None:
                continue
            used += 1
            value = self._value(m, aliases.types.get(name, 0) if aliases else 0)
            ts = m.timestamp or default_ts
            for i, quantity, scale in targets:
                found.setdefault((i, ts), {})[quantity] = scaled(value, scale)
        out.ignored_fields += max(0, len(msg.metrics) - len(unknown) - used)
        if unknown:
            first = mapped[0]
            shown = ", ".join(str(a) for a in unknown[:20])
            reject(
                out,
                now_ns,
                topic,
                payload,
                RejectReason.UNKNOWN_ALIAS,
                f"metric alias(es) {shown} not announced by a BIRTH (rebirth requested)",
                park=first.park,
                device=first.device if len(mapped) == 1 else None,
            )
        where = "/".join(topic.split("/")[1:])
        for (i, ts), values in found.items():
            dev = mapped[i]
            emit(
                self.native,
                out,
                park=dev.park,
                device=dev.device,
                ts=ts,
                values=values,
                topic=topic,
                payload=payload,
                now_ns=now_ns,
                where=f"Sparkplug {where} → {dev.device}",
            )

    def _by_name(self, mapped: list[_Mapped]) -> dict[str, list[tuple[int, str, float]]]:
        """metric name → (index into `mapped`, quantity, scale), built once per registry."""
        key = id(mapped)
        got = self._targets.get(key)
        if got is None:
            got = {}
            for i, dev in enumerate(mapped):
                for name, targets in dev.metrics.items():
                    got.setdefault(name, []).extend((i, q, scale) for q, scale in targets)
            self._targets[key] = got
        return got

    @staticmethod
    def _value(m: Any, birth_type: int) -> Any:
        """A metric's value as a Python number where it is one (else as-is, to be rejected)."""
        kind = m.WhichOneof("value")
        if kind is None:
            return None
        raw = getattr(m, kind)
        dtype = m.datatype or birth_type
        if kind in ("int_value", "long_value"):
            signed = _SIGNED.get(dtype)
            if signed is None:
                return int(raw)
            try:
                return signed(raw)
            except (OverflowError, ValueError):  # e.g. 256 sent as an Int8: not a reading
                return f"<{_codec().type_name(dtype)} out of range: {raw}>"
        if kind == "float_value":
            return _float32(float(raw))
        if kind in ("double_value", "boolean_value", "string_value"):
            return raw
        return f"<{kind}>"  # bytes, datasets, templates: not a quantity
