"""Time-series storage: the `Storage` protocol, InfluxDB and embedded backends, durable spool."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from app.storage.base import (
    Storage,
    StorageError,
    StorageRejected,
    StorageUnavailable,
    WriteBatch,
)
from app.storage.spool import DurableWriter, QuarantinedBatch, SpoolLocked, WriterClosed

if TYPE_CHECKING:
    from app.storage.embedded import EmbeddedStorage
    from app.storage.influx import InfluxStorage, Series

#: The backends load on first use: a process runs on one of them, and InfluxDB's brings httpx
#: (docs/performance.md, "Collector start-up").
_BACKENDS = {
    "EmbeddedStorage": "app.storage.embedded",
    "InfluxStorage": "app.storage.influx",
    "Series": "app.storage.influx",
}

__all__ = [
    "DurableWriter",
    "EmbeddedStorage",
    "InfluxStorage",
    "QuarantinedBatch",
    "Series",
    "SpoolLocked",
    "Storage",
    "StorageError",
    "StorageRejected",
    "StorageUnavailable",
    "WriteBatch",
    "WriterClosed",
]


def __getattr__(name: str) -> Any:
    module = _BACKENDS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
