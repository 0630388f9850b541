"""Prometheus metrics of the collector (own registry, so several collectors can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectorMetrics:
    """Counters and gauges named `lingtan_collector_*`."""

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
        self.spool_depth = Gauge(
            "lingtan_collector_spool_depth", "batches waiting in the spool", registry=r
        )
        self.spool_bytes = Gauge(
            "lingtan_collector_spool_bytes", "bytes waiting in the spool", registry=r
        )
        self.mqtt_connected = Gauge(
            "lingtan_collector_mqtt_connected", "1 while connected to the broker", registry=r
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
