"""Long-running processes: `lingtan api`, and `lingtan up` (collector + API + demo in one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import uvicorn

from app.alarms.engine import EngineOptions
from app.config import Settings
from app.ledgers import LedgerStore
from app.ledgers.registry_store import RegistryWatcher, open_registry
from app.live import LiveState
from app.main import create_app, freeze_startup_heap
from app.registry import Registry
from app.registry.holder import RegistryHolder
from app.storage.base import Storage
from app.storage.factory import open_storage
from collectors.live_feed import live_subscriber
from collectors.mqtt import GmqttPublisher, MqttEndpoint
from collectors.service import CollectorService, start_collector
from lingtan.broker import BrokerChoice, broker_for
from lingtan.ports import bind_api_socket

log = logging.getLogger("lingtan")

DEMO_PARKS = "demo-parks.yaml"
#: the demo's scripted fault: this meter stops publishing from 2 to 6 minutes after the demo
#: goes live, so `device_offline` fires and clears within the first minutes (docs/alarms.md)
DEMO_SILENCE = ("bldg-a", 120.0, 360.0)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling.

    uvicorn re-raises SIGTERM after its shutdown, which would kill the process before the
    collector has flushed; the composition root handles the signals and stops things in order.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def demo_registry_path(data_dir: Path) -> Path:
    """The bundled demo park registry, copied to the data dir so users can read and edit it."""
    target = data_dir / DEMO_PARKS
    if not target.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        target.write_text(resources.files("lingtan").joinpath(DEMO_PARKS).read_text("utf-8"))
    return target


def _storage_name(settings: Settings) -> str:
    if settings.influx_url:
        return f"InfluxDB {settings.influx_url} (database {settings.influx_db})"
    return f"embedded store in {settings.data_dir}"


async def _serve_until_stopped(
    app_server: _Server, stop: asyncio.Event, sock: socket.socket
) -> None:
    server_task = asyncio.create_task(app_server.serve(sockets=[sock]), name="lingtan-api")
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({server_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    app_server.should_exit = True
    stop_task.cancel()
    await server_task


def _uvicorn(app: object, settings: Settings) -> _Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
    )
    return _Server(config)


def _open_ledgers(settings: Settings) -> tuple[LedgerStore, RegistryHolder, RegistryWatcher]:
    """The ledger store (bootstrap admin key applied) and the registry kept in it."""
    ledgers = LedgerStore(settings.ledger_url)
    try:
        if settings.bootstrap_admin_key is not None:
            ledgers.bootstrap_admin(settings.bootstrap_admin_key.get_secret_value())
        registry, watcher = open_registry(ledgers, settings.parks, settings.registry_poll_s)
    except BaseException:
        ledgers.close()
        raise
    return ledgers, registry, watcher


async def run_api(settings: Settings) -> None:
    """`lingtan api`: the HTTP API, its live view fed from MQTT when a broker is configured."""
    sock = bind_api_socket(settings.api_host, settings.api_port)  # a busy port: stop here
    try:
        await _run_api(settings, sock)
    finally:
        sock.close()


async def _run_api(settings: Settings, sock: socket.socket) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ledgers, registry, watcher = _open_ledgers(settings)
    live = LiveState(registry.registry, stale_after_s=settings.stale_after_s)
    storage = await open_storage(settings)
    stop = _stop_event()
    feed: asyncio.Task[None] | None = None
    sub = None
    try:
        app = create_app(
            settings,
            registry=registry,
            storage=storage,
            ledgers=ledgers,
            live=live,
            registry_watcher=watcher,
            alarm_engine=EngineOptions.from_settings(settings),
        )
        freeze_startup_heap()
        if settings.mqtt_url:
            sub, handler = live_subscriber(settings.mqtt_url, registry, live.apply)
            feed = asyncio.create_task(sub.run(handler), name="lingtan-live-feed")  # type: ignore[arg-type]
        else:
            log.warning("no LINGTAN_MQTT_URL: /live shows nothing until a broker is configured")
        log.info(
            "API on http://%s:%d (docs at /docs), storage: %s",
            settings.api_host,
            settings.api_port,
            _storage_name(settings),
        )
        await _serve_until_stopped(_uvicorn(app, settings), stop, sock)
    finally:
        if sub is not None:
            await sub.stop()
        if feed is not None:
            await feed
        await storage.close()
        ledgers.close()


async def run_demo(broker: BrokerChoice, registry: Registry, backfill_h: float = 6.0) -> None:
    """Simulate every park: the last hours at once (so charts have data), then in real time."""
    from simulator import GatewayOptions, simulate_parks

    # DEMO_SILENCE = (device, from s, to s after going live): that meter says nothing then
    silence: tuple[str, float, float] | None = DEMO_SILENCE

    pub = GmqttPublisher(MqttEndpoint.parse(broker.url), mqtt_version=broker.mqtt_version)
    await pub.connect()
    try:
        start = datetime.now(UTC) - timedelta(hours=backfill_h)
        live_ns = time.time_ns()
        quiet: tuple[str, int, int] | None = None
        if silence is not None:
            device, a_s, b_s = silence
            quiet = (device, live_ns + int(a_s * 1e9), live_ns + int(b_s * 1e9))
        messages = simulate_parks(
            registry,
            [p.id for p in registry.parks],
            start,
            timedelta(days=365),
            step_s=60,
            seed=1,
            # a glitch now and then, so the live page shows what a repaired figure looks like
            options=GatewayOptions.demo(),
        )
        for msg in messages:
            ahead_s = (msg.sim_ns - time.time_ns()) / 1e9
            if ahead_s > 0:
                await asyncio.sleep(ahead_s)
            if quiet is not None and quiet[1] <= msg.sim_ns < quiet[2]:
                parts = msg.topic.split("/")  # lingtan/v1/<park>/<device>/telemetry
                if len(parts) > 3 and parts[3] == quiet[0]:
                    continue
            await pub.publish(msg.topic, msg.payload, qos=1)
    finally:
        with contextlib.suppress(Exception):
            await pub.close()


async def run_up(settings: Settings, *, demo: bool = False) -> None:
    """`lingtan up`: broker (configured, Mosquitto or embedded), collector, API, optional demo."""
    sock = bind_api_socket(settings.api_host, settings.api_port)  # a busy port: stop here
    try:
        await _run_up(settings, sock, demo)
    finally:
        sock.close()


async def _run_up(settings: Settings, sock: socket.socket, demo: bool) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if demo and not settings.parks.exists():
        settings = settings.model_copy(update={"parks": demo_registry_path(settings.data_dir)})
    ledgers, registry, watcher = _open_ledgers(settings)
    stop = _stop_event()
    try:
        async with broker_for(settings.mqtt_url, settings.data_dir) as broker:
            settings = settings.model_copy(update={"mqtt_url": broker.url})
            local = settings.api_host in {"127.0.0.1", "localhost", "::1"}
            if local and not settings.anonymous_read:
                # one machine, loopback only: reading needs no key; writes still do
                settings = settings.model_copy(update={"anonymous_read": True})
            live = LiveState(registry.registry, stale_after_s=settings.stale_after_s)
            storage: Storage = await open_storage(settings)
            # the collector starts after the app: its spool is read through this holder
            collector: list[CollectorService] = []

            def backlog() -> tuple[int, bool]:
                if not collector:
                    return 0, False
                w = collector[0].writer
                return w.spool_bytes, w.spool_bytes >= w.max_spool_bytes

            # one registry for the API and the collector: an edit through the API reaches both
            app = create_app(
                settings,
                registry=registry,
                storage=storage,
                ledgers=ledgers,
                live=live,
                registry_watcher=watcher,
                alarm_engine=EngineOptions.from_settings(settings),
                alarm_backlog=backlog,
            )
            service = await start_collector(
                settings,
                storage=storage,
                on_readings=live.apply,
                mqtt_version=broker.mqtt_version,
                registry=registry,
            )
            demo_task = asyncio.create_task(run_demo(broker, registry.registry)) if demo else None
            print(
                f"lingtan up: API and live page on http://{settings.api_host}:{settings.api_port}/"
                f" (docs /docs) · broker: {broker.describe()} · storage: {_storage_name(settings)}"
                + (" · demo park simulated" if demo else "")
                + (" · reading without API key (loopback)" if settings.anonymous_read else ""),
                flush=True,
            )
            collector.append(service)  # the alarm engine's backlog probe reads its spool
            try:
                await _serve_until_stopped(_uvicorn(app, settings), stop, sock)
            finally:
                if demo_task is not None:
                    demo_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await demo_task
                await service.stop()  # flushes what was received, then closes storage
                log.info("lingtan up stopped cleanly")
    finally:
        ledgers.close()
