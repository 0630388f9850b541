"""`lingtan simulate --format`: the simulated meters as Sparkplug B, Neuron or vendor JSON.

The simulator's readings are re-encoded the way those gateways send them, and the registry
gets each device's matching `source`, so every gateway format can be demonstrated and
benchmarked (docs/gateways.md):

- `sparkplug`: group `lingtan-sim`, one edge node per park (id = park id), one Sparkplug
  device per meter; NBIRTH, then a DBIRTH the first time a meter reports (again when it
  reports a new metric), then alias-only DDATA. Energy counters go out in Wh (UInt64) and
  are scaled back by the registry's `scale: 0.001`.
- `neuron`: values-format uploads, one per 20 meters (a Neuron group) and instant, on
  `/neuron/lingtan-sim/{node}/{group}`; counters in Wh as well.
- `json`: one `records` array per park and instant on `vendor/{park}/up`,
  `[{"name": "{device}.{quantity}", "value": v, "ts": epoch_ms}, ...]`.

Only the contract's quantities are carried (a gateway has no `reset` flag either: the
collector's glitch and reset rules decide). Faulty payloads meant for dead letters are sent
unchanged on the native topic.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from pysparkplug import DataType, DBirth, DData, Metric, NBirth

from app.registry.models import COUNTER_QUANTITIES, INSTANT_QUANTITIES, Registry
from app.registry.sources import DeviceSource, QuantitySource
from simulator.generator import SimMessage

FORMATS = ("native", "sparkplug", "neuron", "json")
SPARKPLUG_GROUP = "lingtan-sim"
NEURON_APP = "lingtan-sim"
#: meters per Neuron group (one upload message each per instant)
NEURON_GROUP_SIZE = 20
_QUANTITIES = tuple(sorted(COUNTER_QUANTITIES | INSTANT_QUANTITIES))


def _wire_name(quantity: str) -> tuple[str, float]:
    """The gateway's name for a quantity and the registry scale back to ours (Wh → kWh)."""
    if quantity.endswith("_kwh"):
        return quantity[:-4] + "_wh", 0.001
    return quantity, 1.0


def neuron_group(index: int) -> str:
    return f"meters-{index // NEURON_GROUP_SIZE:02d}"


def with_sources(registry: Registry, fmt: str, park_ids: Iterable[str]) -> Registry:
    """The registry with every device of `park_ids` sourced from format `fmt`."""
    if fmt == "native":
        return registry
    chosen = set(park_ids)
    parks = []
    for park in registry.parks:
        if park.id not in chosen:
            parks.append(park)
            continue
        devices = []
        for index, device in enumerate(park.devices):
            devices.append(
                device.model_copy(update={"source": _source(fmt, park.id, index, device.id)})
            )
        parks.append(park.model_copy(update={"devices": tuple(devices)}))
    return Registry.model_validate({"parks": [p.model_dump() for p in parks]})


def _source(fmt: str, park: str, index: int, device: str) -> DeviceSource:
    quantities: dict[str, QuantitySource] = {}
    for q in _QUANTITIES:
        wire, scale = _wire_name(q)
        if fmt == "sparkplug":
            quantities[q] = QuantitySource(metric=wire, scale=scale)
        elif fmt == "neuron":
            quantities[q] = QuantitySource(tag=f"{device}.{wire}", scale=scale)
        else:
            quantities[q] = QuantitySource(tag=f"{device}.{q}")
    if fmt == "sparkplug":
        return DeviceSource(
            format="sparkplug",
            group=SPARKPLUG_GROUP,
            edge=park,
            device=device,
            quantities=quantities,
        )
    if fmt == "neuron":
        return DeviceSource(
            format="neuron",
            node=f"sim-{park}",
            group=neuron_group(index),
            topic=f"/neuron/{NEURON_APP}/#",
            quantities=quantities,
        )
    return DeviceSource(
        format="json",
        topic=f"vendor/{park}/up",
        layout="records",
        ts_format="epoch_ms",
        quantities=quantities,
    )


def _ts_ms(value: Any) -> int:
    if isinstance(value, str):
        dt = datetime.fromisoformat(value)
        return int(dt.timestamp() * 1000)
    return int(value * 1000) if value < 1e11 else int(value)


def _readings(msg: SimMessage) -> list[tuple[str, str, int, dict[str, float]]] | None:
    """(park, device, ts_ms, quantities) of a native message; None if it is not plain."""
    parts = msg.topic.split("/")
    if msg.malformed is not None or len(parts) != 5:
        return None
    try:
        doc = json.loads(msg.payload)
    except ValueError:
        return None
    out = []
    for item in doc if isinstance(doc, list) else [doc]:
        if not isinstance(item, dict) or "ts" not in item:
            return None
        values = {
            k: float(v) for k, v in item.items() if k in COUNTER_QUANTITIES | INSTANT_QUANTITIES
        }
        out.append((parts[2], parts[3], _ts_ms(item["ts"]), values))
    return out


class Transcoder:
    """Turns the simulator's native messages into one gateway format's messages, in order."""

    def __init__(self, fmt: str, registry: Registry) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
        self.fmt = fmt
        self._index = {
            (park.id, d.id): i for park in registry.parks for i, d in enumerate(park.devices)
        }
        # sparkplug: per edge node (park) its seq, next alias, and each device's born metrics
        self._seq: dict[str, int] = {}
        self._alias: dict[str, int] = {}
        self._born: dict[tuple[str, str], dict[str, int]] = {}

    def run(self, messages: Iterable[SimMessage]) -> Iterator[SimMessage]:
        if self.fmt == "native":
            yield from messages
            return
        pending: list[tuple[str, str, int, dict[str, float]]] = []
        pending_ns: int | None = None
        for msg in messages:
            readings = _readings(msg)
            if readings is None:
                yield msg  # a fault meant for a dead letter: as the simulator made it
                continue
            if self.fmt == "sparkplug":
                for r in readings:
                    yield from self._sparkplug(msg.sim_ns, *r)
                continue
            if pending_ns is not None and msg.sim_ns != pending_ns:
                yield from self._grouped(pending, pending_ns)
                pending = []
            pending_ns = msg.sim_ns
            pending += readings
        if pending and pending_ns is not None:
            yield from self._grouped(pending, pending_ns)

    def _next_seq(self, park: str) -> int:
        seq = self._seq.get(park, 0)
        self._seq[park] = (seq + 1) % 256
        return seq

    def _sparkplug(
        self, sim_ns: int, park: str, device: str, ts: int, values: dict[str, float]
    ) -> Iterator[SimMessage]:
        if park not in self._seq:
            birth = NBirth(
                timestamp=ts,
                seq=self._next_seq(park),
                metrics=(
                    Metric(timestamp=None, name="bdSeq", datatype=DataType.INT64, value=0),
                    Metric(
                        timestamp=None,
                        name="Node Control/Rebirth",
                        datatype=DataType.BOOLEAN,
                        value=False,
                    ),
                ),
            )
            topic = f"spBv1.0/{SPARKPLUG_GROUP}/NBIRTH/{park}"
            yield SimMessage(topic, birth.encode(include_dtypes=True), sim_ns, None, 0)
        wire = {}
        for q, v in values.items():
            name, scale = _wire_name(q)
            wire[name] = (
                (round(v * 1000), DataType.UINT64) if scale != 1.0 else (v, DataType.DOUBLE)
            )
        born = self._born.get((park, device))
        if born is None or not wire.keys() <= born.keys():
            born = dict(born or {})
            for name in wire:
                if name not in born:
                    born[name] = self._alias.get(park, 0)
                    self._alias[park] = born[name] + 1
            self._born[(park, device)] = born
            metrics = tuple(
                Metric(timestamp=None, name=n, datatype=t, value=v, alias=born[n])
                for n, (v, t) in wire.items()
            )
            payload = DBirth(timestamp=ts, seq=self._next_seq(park), metrics=metrics)
            topic = f"spBv1.0/{SPARKPLUG_GROUP}/DBIRTH/{park}/{device}"
            yield SimMessage(topic, payload.encode(include_dtypes=True), sim_ns, None, 1)
            return
        metrics = tuple(
            Metric(timestamp=None, name=None, datatype=t, value=v, alias=born[n])
            for n, (v, t) in wire.items()
        )
        data = DData(timestamp=ts, seq=self._next_seq(park), metrics=metrics)
        topic = f"spBv1.0/{SPARKPLUG_GROUP}/DDATA/{park}/{device}"
        yield SimMessage(topic, data.encode(), sim_ns, None, 1)

    def _grouped(
        self, readings: list[tuple[str, str, int, dict[str, float]]], sim_ns: int
    ) -> Iterator[SimMessage]:
        groups: dict[tuple[str, str, int], list[tuple[str, dict[str, float]]]] = {}
        for park, device, ts, values in readings:
            key = park if self.fmt == "json" else neuron_group(self._index.get((park, device), 0))
            groups.setdefault((park, key, ts), []).append((device, values))
        for (park, group, ts), members in groups.items():
            if self.fmt == "neuron":
                tags: dict[str, float | int] = {}
                for device, values in members:
                    for q, v in values.items():
                        name, scale = _wire_name(q)
                        tags[f"{device}.{name}"] = round(v * 1000) if scale != 1.0 else v
                doc: Any = {
                    "timestamp": ts,
                    "node": f"sim-{park}",
                    "group": group,
                    "values": tags,
                    "errors": {},
                    "metas": {},
                }
                topic = f"/neuron/{NEURON_APP}/sim-{park}/{group}"
            else:
                doc = [
                    {"name": f"{device}.{q}", "value": v, "ts": ts}
                    for device, values in members
                    for q, v in values.items()
                ]
                topic = f"vendor/{park}/up"
            payload = json.dumps(doc, separators=(",", ":")).encode()
            yield SimMessage(topic, payload, sim_ns, None, len(members))
