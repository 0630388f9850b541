"""Time-series storage: the `Storage` protocol, InfluxDB implementation and durable spool."""

from app.storage.base import (
    Storage,
    StorageError,
    StorageRejected,
    StorageUnavailable,
    WriteBatch,
)
from app.storage.influx import InfluxStorage, Series
from app.storage.spool import DurableWriter, QuarantinedBatch, SpoolLocked, WriterClosed

__all__ = [
    "DurableWriter",
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
