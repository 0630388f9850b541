"""Where a device's readings come from when its gateway speaks its own format (docs/gateways.md).

A device without a `source` publishes Lingtan's native JSON on
`lingtan/v1/{park}/{device}/telemetry`. With one, the collector reads it out of what the
park's gateway already sends: Sparkplug B, EMQ Neuron's upload JSON, or another vendor's
JSON mapped field by field. One gateway message may feed many devices.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Gateway formats a device may name (besides the native JSON, which needs no source).
SOURCE_FORMATS = ("sparkplug", "neuron", "json")
#: Neuron's upload topic when its MQTT app keeps the default (`/neuron/{app}/...`).
NEURON_DEFAULT_TOPIC = "/neuron/#"
#: `<quantity>_<unit>`, the names readings are stored under.
_QUANTITY = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: Sparkplug ids: any UTF-8 except the topic separators and wildcards.
_SPB_ID = re.compile(r"[^/+#]{1,128}")


class QuantitySource(BaseModel):
    """Where one quantity of a device is in the gateway's message, and how to scale it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Neuron tag name; for the json `records` layout, the record's name
    tag: str | None = Field(default=None, min_length=1, max_length=256)
    #: Sparkplug metric name, as announced in the node's or device's BIRTH
    metric: str | None = Field(default=None, min_length=1, max_length=256)
    #: json `object` layout: JSON pointer (`/data/0/ep`) or dotted path (`data.0.ep`)
    path: str | None = Field(default=None, min_length=1, max_length=256)
    #: multiplies the gateway's value, computed in decimal so 8765432109 Wh × 0.001 is exactly
    #: 8765432.109 kWh: 0.001 for Wh→kWh, 1000 for MWh→kWh, CT × PT ratio (e.g. 40 × 100 = 4000)
    #: for a meter that reports secondary-side values; negative for a CT mounted reversed
    scale: float = 1.0

    @field_validator("scale")
    @classmethod
    def _usable_scale(cls, value: float) -> float:
        if not math.isfinite(value) or value == 0:
            raise ValueError("scale must be a finite, non-zero number")
        return value


class DeviceSource(BaseModel):
    """A device's gateway: which format, which node/group/edge/device, which field per quantity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["sparkplug", "neuron", "json"]
    #: sparkplug: group id; neuron: the south node's group name
    group: str | None = Field(default=None, min_length=1, max_length=128)
    #: sparkplug: edge node id
    edge: str | None = Field(default=None, min_length=1, max_length=128)
    #: sparkplug: device id under the edge node (omit for the edge node's own metrics)
    device: str | None = Field(default=None, min_length=1, max_length=128)
    #: neuron: south node (driver) name
    node: str | None = Field(default=None, min_length=1, max_length=128)
    #: MQTT topic filter the gateway publishes on (`+`/`#` allowed). neuron: default
    #: `/neuron/#`; json: required; sparkplug: always `spBv1.0/{group}/...`, not set here
    topic: str | None = Field(default=None, min_length=1, max_length=256)
    #: json: `object` (one object, or an array of them, with a field per quantity) or
    #: `records` (an array of `{name, value, ts}` records, possibly under `records_path`)
    layout: Literal["object", "records"] = "object"
    #: json `records`: path to the array inside the message (default: the message itself)
    records_path: str | None = None
    #: json `records`: the keys of a record's name, value and timestamp
    name_key: str = "name"
    value_key: str = "value"
    #: json: where the timestamp is (object: a path; records: the record's key); none: the
    #: collector stamps arrival time
    ts: str | None = None
    #: json: `auto` (RFC 3339 or epoch s/ms as in native JSON), `epoch_s`, `epoch_ms`,
    #: `rfc3339`, or a strftime pattern (e.g. `%Y-%m-%d %H:%M:%S`) read in the park's time zone
    ts_format: str = "auto"
    #: json `object`: only elements whose field at each path equals the value (as text) are
    #: this device's, e.g. `{"/meter_id": "M-07"}` when many meters share one topic
    match: dict[str, str] = Field(default_factory=dict)
    #: Lingtan quantity (`energy_import_kwh`, `power_kw`, ...) → where it is in the message
    quantities: dict[str, QuantitySource] = Field(min_length=1)

    @field_validator("quantities")
    @classmethod
    def _quantity_names(cls, value: dict[str, QuantitySource]) -> dict[str, QuantitySource]:
        for name in value:
            if not _QUANTITY.fullmatch(name) or name in {"ts", "reset", "time"}:
                raise ValueError(f"quantity {name!r} is not a <quantity>_<unit> name")
        return value

    @model_validator(mode="after")
    def _format_fields(self) -> DeviceSource:
        need: dict[str, tuple[str, ...]] = {
            "sparkplug": ("group", "edge"),
            "neuron": ("node", "group"),
            "json": ("topic",),
        }
        for name in need[self.format]:
            if getattr(self, name) is None:
                raise ValueError(f"a {self.format} source needs {name!r}")
        if self.format == "sparkplug":
            for name in ("group", "edge", "device"):
                value = getattr(self, name)
                if value is not None and not _SPB_ID.fullmatch(value):
                    raise ValueError(f"sparkplug {name} {value!r} may not contain / + #")
            if self.topic is not None:
                raise ValueError("a sparkplug source's topic is spBv1.0/{group}/...: omit 'topic'")
        key = {
            "sparkplug": "metric",
            "neuron": "tag",
            "json": "tag" if self.layout == "records" else "path",
        }[self.format]
        for name, q in self.quantities.items():
            given = {k for k in ("tag", "metric", "path") if getattr(q, k) is not None}
            if given != {key}:
                raise ValueError(
                    f"quantity {name!r}: a {self.format} source"
                    f"{' (records)' if self.format == 'json' and key == 'tag' else ''}"
                    f" names each quantity by {key!r} only"
                )
        return self

    def topic_filter(self) -> str:
        """The MQTT topic filter this source's messages arrive on."""
        if self.format == "neuron":
            return self.topic or NEURON_DEFAULT_TOPIC
        if self.format == "json":
            assert self.topic is not None  # validated
            return self.topic
        return f"spBv1.0/{self.group}/#"
