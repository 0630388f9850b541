"""Prometheus metrics of the collector (own registry, so several collectors can share a process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class SpoolStats(Protocol):
    """What the metrics read from the collector's `DurableWriter` (app/storage/spool.py)."""

    @property
    def spool_depth(self) -> int: ...
    @property
    def spool_bytes(self) -> int: ...
    @property
    def quarantined_count(self) -> int: ...

    replayed_batches: int
    storage_errors: int


class _SpoolCollector(Collector):
    """The writer's own figures, read at each scrape: current without any batch arriving."""

    def __init__(self, writer: SpoolStats) -> None:
        self.writer = writer

    def describe(self) -> Iterator[Metric]:
        return self._families(0, 0, 0, 0, 0)

    def collect(self) -> Iterator[Metric]:
        w = self.writer
        return self._families(
            w.spool_depth, w.spool_bytes, w.quarantined_count, w.replayed_batches, w.storage_errors
        )

    @staticmethod
    def _families(
        depth: int, nbytes: int, quarantined: int, replayed: int, errors: int
    ) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "lingtan_collector_spool_depth", "batches waiting in the spool", value=depth
        )
        yield GaugeMetricFamily(
            "lingtan_collector_spool_bytes", "bytes waiting in the spool", value=nbytes
        )
        yield GaugeMetricFamily(
            "lingtan_collector_quarantined",
            "rows in the spool's quarantine: points the store refused for good (one each, mostly)",
            value=quarantined,
        )
        yield CounterMetricFamily(
            "lingtan_collector_replayed_batches",
            "spooled batches replayed into storage",
            value=replayed,
        )
        yield CounterMetricFamily(
            "lingtan_collector_storage_errors",
            "storage writes that failed (unreachable or refused); the batch was spooled,"
            " bisected or quarantined, never dropped",
            value=errors,
        )


class CollectorMetrics:
    """Counters and gauges named `lingtan_collector_*`.

    The spool's figures (depth, bytes, quarantine, replays, storage errors) are exported once
    `follow(writer)` is called, read from the writer at each scrape.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter("lingtan_collector_messages", "MQTT messages received", registry=r)
        self.readings = Counter("lingtan_collector_readings", "readings accepted", registry=r)
        self.rejected = Counter(
            "lingtan_collector_rejected",
            "readings or payloads dead-lettered, by reason",
            ["reason"],
            registry=r,
        )
        self.ignored_fields = Counter(
            "lingtan_collector_ignored_fields",
            "non-numeric unknown fields not stored (the reading itself was kept)",
            registry=r,
        )
        self.intervals = Counter(
            "lingtan_collector_intervals", "interval energies written or rewritten", registry=r
        )
        self.batches = Counter("lingtan_collector_batches", "batches flushed", registry=r)
        self.written = Counter(
            "lingtan_collector_written_batches", "batches written straight to storage", registry=r
        )
        self.spooled = Counter(
            "lingtan_collector_spooled_batches", "batches appended to the on-disk spool", registry=r
        )
        self.history_misses = Counter(
            "lingtan_collector_history_misses",
            "devices whose previous readings could not be loaded (storage down)",
            registry=r,
        )
        self.tsless_redeliveries = Counter(
            "lingtan_collector_tsless_redeliveries",
            "readings without ts dropped as a redelivery of one stored moments before",
            registry=r,
        )
        self.recomputed = Counter(
            "lingtan_collector_recomputed_intervals",
            "intervals recomputed from storage for late readings or deferred repairs",
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "lingtan_collector_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.last_durable = Gauge(
            "lingtan_collector_last_durable_timestamp_seconds",
            "Unix time the last batch was made durable (written or spooled); 0 = none yet",
            registry=r,
        )
        self.registry_version = Gauge(
            "lingtan_collector_registry_version",
            "stored version of the park registry in force (0: the file, not stored)",
            registry=r,
        )
        self.write_latency = Histogram(
            "lingtan_collector_write_seconds",
            "time to make a batch durable (written or spooled)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )

    def follow(self, writer: SpoolStats) -> None:
        """Export `writer`'s spool figures (call once per registry)."""
        self.registry.register(_SpoolCollector(writer))
