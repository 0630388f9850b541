"""Prometheus metrics per gateway format (`lingtan_collector_format_*`), beside the totals."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class FormatMetrics:
    """What each gateway format received, accepted, rejected or could not map (docs/gateways.md)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.messages = Counter(
            "lingtan_collector_format_messages", "MQTT messages by format", ["format"], registry=r
        )
        self.readings = Counter(
            "lingtan_collector_format_readings",
            "readings accepted by format",
            ["format"],
            registry=r,
        )
        self.rejected = Counter(
            "lingtan_collector_format_rejected",
            "dead letters by format and reason",
            ["format", "reason"],
            registry=r,
        )
        self.unmapped = Counter(
            "lingtan_collector_format_unmapped",
            "messages about nothing the registry maps (another Sparkplug device, a heartbeat)",
            ["format"],
            registry=r,
        )
        self.seq_gaps = Counter(
            "lingtan_collector_sparkplug_seq_gaps",
            "Sparkplug seq numbers missed (per collector: a share group splits the stream)",
            registry=r,
        )
        self.rebirths = Counter(
            "lingtan_collector_sparkplug_rebirth_requests",
            "NCMD Node Control/Rebirth requests published (unknown metric alias)",
            registry=r,
        )
        self.offline = Gauge(
            "lingtan_collector_sparkplug_offline_devices",
            "mapped Sparkplug devices whose node or device is dead or not born yet",
            registry=r,
        )
