"""`lingtan collect`: wires registry, storage, spool, pipeline, metrics and MQTT together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import start_http_server

from app.config import Settings
from app.intervals.models import IntervalEnergy
from app.registry.holder import RegistryChange, RegistryHolder
from app.storage.base import Storage
from app.storage.factory import open_storage
from app.storage.spool import DurableWriter
from app.telemetry.decode import DecodeLimits
from app.telemetry.models import Reading
from collectors.metrics import CollectorMetrics
from collectors.mqtt import GmqttSubscriber, MqttEndpoint, MQTTv50
from collectors.pipeline import Collector
from collectors.registry_source import RegistryWatch, own_registry
from collectors.topics import SUBSCRIPTIONS

log = logging.getLogger(__name__)


@dataclass
class CollectorService:
    """A running collector: stop it with `await service.stop()`."""

    collector: Collector
    subscriber: GmqttSubscriber
    writer: DurableWriter
    storage: Storage
    metrics: CollectorMetrics
    _mqtt_task: asyncio.Task[None]
    #: watching for registry edits in the ledger store (when this service owns the registry)
    _registry_task: asyncio.Task[None] | None = None
    _registry_watch: RegistryWatch | None = None
    #: keeping the store's day rollups current (docs/storage.md, "Day rollups")
    _rollup_task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        # stop taking messages, make what was taken durable, then close storage;
        # anything received but not yet acked is redelivered by the broker next time
        for task in (self._registry_task, self._rollup_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.subscriber.stop()
        await self.collector.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await self._mqtt_task
        await self.writer.close()
        await self.storage.close()
        if self._registry_watch is not None:
            self._registry_watch.close()


async def start_collector(
    settings: Settings,
    *,
    storage: Storage | None = None,
    on_readings: Callable[[list[Reading]], object] | None = None,
    on_intervals: Callable[[list[IntervalEnergy]], object] | None = None,
    serve_metrics: bool = True,
    mqtt_version: int = MQTTv50,
    registry: RegistryHolder | None = None,
) -> CollectorService:
    """Start the collector in the running event loop and return a handle.

    `registry`: a holder shared with the rest of the process (`lingtan up`), which keeps it
    current; without one the collector reads and watches the registry itself.
    """
    if not settings.mqtt_url:
        raise ValueError("no broker configured: set LINGTAN_MQTT_URL or pass --mqtt-url")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    watch: RegistryWatch | None = None
    if registry is None:
        registry, watch = own_registry(settings)
    holder = registry
    storage = storage or await open_storage(settings)
    metrics = CollectorMetrics()
    writer = DurableWriter(
        storage, settings.spool_path, max_spool_bytes=int(settings.spool_max_mb * 1024 * 1024)
    )
    writer.start()
    metrics.follow(writer)
    subscriber = GmqttSubscriber(
        MqttEndpoint.parse(settings.mqtt_url),
        SUBSCRIPTIONS,
        settings.client_id,
        share_group=settings.share_group,
        on_state=lambda up: metrics.mqtt_connected.set(1 if up else 0),
        mqtt_version=mqtt_version,
    )
    collector = Collector(
        holder.registry,
        writer,
        storage,
        metrics=metrics,
        batch_max_items=settings.batch_max_readings,
        batch_max_wait_s=settings.batch_max_wait_ms / 1000,
        limits=DecodeLimits(max_future_s=settings.max_future_s),
        on_readings=on_readings,
        on_intervals=on_intervals,
        max_unacked_messages=subscriber.receive_maximum // 2,
        on_failure=subscriber.reconnect,
        on_command=lambda topic, payload, qos: subscriber.publish(topic, payload, qos),
        state_path=settings.gateway_state_path,
    )
    # the native topic and whatever the registry's gateway sources need (docs/gateways.md)
    filters = collector.decoder.filters()
    subscriber.set_filters(filters.shared, filters.unshared)
    collector.start()
    metrics.registry_version.set(holder.version)

    def switch(change: RegistryChange) -> None:
        collector.set_registry(change.new, change.diff.stale_devices(change.old))
        filters = collector.decoder.filters()
        subscriber.set_filters(filters.shared, filters.unshared)
        metrics.registry_version.set(change.version)

    holder.subscribe(switch)
    if serve_metrics and settings.metrics_port:
        _serve_metrics(settings.metrics_port, metrics)
    task = asyncio.create_task(subscriber.run_batched(collector), name="lingtan-mqtt")
    watching = asyncio.create_task(watch.run(), name="lingtan-registry") if watch else None
    rollups = _start_rollups(settings, storage, holder)
    return CollectorService(
        collector, subscriber, writer, storage, metrics, task, watching, watch, rollups
    )


def _serve_metrics(port: int, metrics: CollectorMetrics) -> None:
    try:
        start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    except OSError as exc:
        raise ValueError(
            f"cannot serve collector metrics on 127.0.0.1:{port}"
            f" ({exc.strerror}); choose another --metrics-port or 0 to turn them off"
        ) from exc
    log.info("metrics on http://127.0.0.1:%d/metrics", port)


def _start_rollups(
    settings: Settings, storage: Storage, holder: RegistryHolder
) -> asyncio.Task[None] | None:
    """Keep the store's day rollups current (docs/storage.md, "Day rollups")."""
    # of `collect --workers N`, only the first builds rollups: one builder is enough
    if settings.rollup_interval_s <= 0 or settings.collect_worker > 1:
        return None
    return asyncio.create_task(
        _run_rollups(settings.rollup_interval_s, storage, holder), name="lingtan-rollups"
    )


async def _run_rollups(interval_s: float, storage: Storage, holder: RegistryHolder) -> None:
    await asyncio.sleep(interval_s)
    # imported when the first pass is due, not at start: app.balance and what it brings
    # (accounting, corrections) are ~0.5 s of the collector's start (docs/performance.md)
    from app.balance.rollup_builder import RollupBuilder

    builder = RollupBuilder(storage, lambda: holder.registry.parks)
    await builder.run(interval_s, first_after_s=0.0)


async def run_collect(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then shut down without losing accepted readings."""
    service = await start_collector(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "collecting %s from %s (client id %s%s)",
        ", ".join(SUBSCRIPTIONS),
        MqttEndpoint.parse(settings.mqtt_url or "").redacted(),
        settings.client_id,
        f", share group {settings.share_group}" if settings.share_group else "",
    )
    await stop.wait()
    log.info("stopping: flushing queued readings")
    await service.stop()
