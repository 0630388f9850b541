"""Sparkplug B's protobuf side (pysparkplug, ~0.1 s to import): loaded by the Sparkplug format
only once the registry maps a device to it (docs/performance.md, "Collector start-up")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pysparkplug import DataType, Metric, NCmd

# the compiled schema (private module, version pinned): pysparkplug's own decode needs a BIRTH
# for every alias and raises on an unknown one, where a host application must dead-letter it
# and ask for a rebirth instead
from pysparkplug._protobuf import Payload

__all__ = ["SIGNED", "Payload", "rebirth_payload", "type_name"]

#: Signed integer types travel as unsigned two's complement; their decoders, by type number
#: (a dict lookup: building the DataType enum per value costs more than the decoding)
SIGNED: dict[int, Callable[[Any], Any]] = {
    int(t): t.decode for t in (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64)
}


def rebirth_payload(metric_name: str, now_ms: int) -> bytes:
    """An NCMD payload setting the boolean metric `metric_name` to true."""
    metric = Metric(timestamp=now_ms, name=metric_name, datatype=DataType.BOOLEAN, value=True)
    return NCmd(timestamp=now_ms, metrics=(metric,)).encode(include_dtypes=True)


def type_name(dtype: int) -> str:
    return DataType(dtype).name
