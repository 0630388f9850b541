"""Time-series storage: the `Storage` protocol, InfluxDB and embedded backends, durable spool."""

from app.storage.base import (
    Storage,
    StorageError,
    StorageRejected,
    StorageUnavailable,
    WriteBatch,
)
from app.storage.embedded import EmbeddedStorage
from app.storage.influx import InfluxStorage, Series
from app.storage.spool import DurableWriter, QuarantinedBatch, SpoolLocked, WriterClosed

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
