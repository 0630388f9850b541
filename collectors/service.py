"""`lingtan collect`: wires registry, storage, spool, pipeline, metrics and MQTT together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import start_http_server
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from app.balance.rollup_builder import RollupBuilder
from app.config import Settings
from app.intervals.models import IntervalEnergy
from app.ledgers import LedgerStore
from app.ledgers.registry_store import RegistryWatcher, open_registry
from app.registry import load_registry
from app.registry.holder import RegistryChange, RegistryHolder
from app.storage.base import Storage
from app.storage.factory import open_storage
from app.storage.spool import DurableWriter
from app.telemetry.decode import DecodeLimits
from app.telemetry.models import Reading
from collectors.metrics import CollectorMetrics
from collectors.mqtt import GmqttSubscriber, MqttEndpoint, MQTTv50
from collectors.pipeline import Collector
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
    #: watching for registry edits, and the ledger store it reads (when this service owns them)
    _registry_task: asyncio.Task[None] | None = None
    _ledgers: LedgerStore | None = None
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
        if self._ledgers is not None:
            self._ledgers.close()


def _own_registry(
    settings: Settings,
) -> tuple[RegistryHolder, RegistryWatcher | None, LedgerStore | None]:
    """The collector's registry when it runs alone: the file, superseded by edits stored in
    the ledger store (`LINGTAN_DB_URL`, shared with `lingtan api` so API edits reach here).
    Ingest must not depend on that database: unreachable, the file alone is used."""
    try:
        ledgers = LedgerStore(settings.ledger_url)
    except SQLAlchemyError as exc:
        log.warning(
            "ledger store %s unreachable (%s): using the registry file; registry edits made"
            " through the API need a restart of the collector",
            make_url(settings.ledger_url).render_as_string(hide_password=True),
            exc,
        )
        return RegistryHolder(load_registry(settings.parks)), None, None
    try:
        holder, watcher = open_registry(ledgers, settings.parks, settings.registry_poll_s)
    except BaseException:
        ledgers.close()
        raise
    return holder, watcher, ledgers


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
    watcher: RegistryWatcher | None = None
    ledgers: LedgerStore | None = None
    if registry is None:
        registry, watcher, ledgers = _own_registry(settings)
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
    watch = asyncio.create_task(watcher.run(), name="lingtan-registry") if watcher else None
    rollups = _start_rollups(settings, storage, holder)
    return CollectorService(
        collector, subscriber, writer, storage, metrics, task, watch, ledgers, rollups
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
    builder = RollupBuilder(storage, lambda: holder.registry.parks)
    return asyncio.create_task(builder.run(settings.rollup_interval_s), name="lingtan-rollups")


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
