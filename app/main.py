"""The FastAPI application: `create_app` (dependencies injected), `build_app` and `serve`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from app.alarms.engine import AlarmEngine, Alarms, BacklogProbe, EngineOptions
from app.alarms.metrics import ParkGauges
from app.alarms.routes import router as alarms_router
from app.alarms.store import AlarmStore
from app.auth.routes import router as keys_router
from app.balance.cache import IntervalCache
from app.balance.routes import router as balance_router
from app.balance.service import BalanceService
from app.config import Settings
from app.corrections.routes import router as corrections_router
from app.evaluation.routes import router as evaluation_router
from app.factors.routes import router as factors_router
from app.factors.stored import StoredFactorSets
from app.http.docs import install_offline_docs
from app.http.limits import BodyLimitMiddleware, FailureLimiter
from app.http.metrics import ApiMetrics, MetricsMiddleware
from app.http.openapi import PROMETHEUS_TEXT, served_as
from app.http.services import Services
from app.ledgers import LedgerStore
from app.ledgers.checkpoints import Checkpointer
from app.ledgers.registry_store import RegistryWatcher
from app.ledgers.routes import router as ledgers_router
from app.live.routes import router as live_router
from app.live.state import LiveState
from app.quality.routes import router as quality_router
from app.registry.holder import RegistryChange, RegistryHolder
from app.registry.models import Park, Registry
from app.registry.routes import router as registry_router
from app.storage.base import Storage, StorageRejected, StorageUnavailable
from app.telemetry.routes import router as telemetry_router
from app.web import router as web_router

log = logging.getLogger(__name__)

_NS_PER_S = 1_000_000_000


def _today_window(park: Park, now_ns: int) -> tuple[datetime, datetime]:
    now = datetime.fromtimestamp(now_ns / _NS_PER_S, tz=UTC)
    midnight = datetime.combine(now.astimezone(park.tz).date(), dtime(0), tzinfo=park.tz)
    start = midnight.astimezone(UTC)
    end = max(now, start + timedelta(microseconds=1))
    return start, end


async def refresh_today(svc: Services, park: Park) -> None:
    """Recompute `park`'s balance from local midnight to now and hand it to the live state."""
    now_ns = svc.live.clock()
    start, end = _today_window(park, now_ns)
    result = await svc.balance.balance(park, start, end, "1d")
    svc.live.set_today(park.id, result, now_ns)


async def _today_loop(svc: Services) -> None:
    while True:
        for park in svc.registry.parks:
            try:
                await refresh_today(svc, park)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep refreshing the other parks and later rounds
                svc.metrics.today_refresh_errors.labels(park.id).inc()
                log.warning("today's balance of %s not refreshed: %s", park.id, exc)
        await asyncio.sleep(svc.settings.live_refresh_s)


async def _checkpoint_once(svc: Services) -> None:
    if svc.checkpointer is None:
        return
    try:
        await run_in_threadpool(svc.checkpointer.checkpoint)
    except Exception as exc:  # a full disk must not stop the API; the next round retries
        log.warning("audit checkpoint not written: %s", exc)


async def _checkpoint_loop(svc: Services, interval_s: float) -> None:
    """Sign the audit head into the checkpoint file every `interval_s` when it moved."""
    while True:
        await _checkpoint_once(svc)
        await asyncio.sleep(interval_s)


def registry_changed(svc: Services, change: RegistryChange) -> None:
    """Apply a registry switch to the API's in-memory state: the live view re-plans its
    parks. (Cached balances follow by themselves: they are kept per registry entry.)"""
    svc.live.set_registry(change.new, change.diff.stale_devices(change.old))


def _services(
    settings: Settings,
    holder: RegistryHolder,
    storage: Storage,
    ledgers: LedgerStore,
    live: LiveState,
    cache: IntervalCache,
) -> Services:
    """The services of one app, the alarm log included (its engine is added by the caller)."""
    # user factor sets from the ledger store, next to the built-ins (docs/accounting.md)
    factor_sets = StoredFactorSets(ledgers)
    balance = BalanceService(
        cache, ledgers, max_buckets=settings.max_buckets, factor_sets=factor_sets
    )
    if live._factor_sets is None:  # /live resolves a park's set the same way
        live._factor_sets = factor_sets
    checkpointer = Checkpointer(
        ledgers.audit_head, settings.audit_key_path, settings.audit_checkpoint_path
    )
    svc = Services(
        settings=settings,
        registry_holder=holder,
        storage=storage,
        ledgers=ledgers,
        live=live,
        balance=balance,
        metrics=ApiMetrics(),
        auth_failures=FailureLimiter(settings.auth_fail_limit, settings.auth_fail_window_s),
        checkpointer=checkpointer,
    )
    holder.subscribe(lambda change: registry_changed(svc, change))
    svc.alarms = Alarms(AlarmStore(ledgers))
    return svc


def _lifespan(
    svc: Services, refresh_today_in_background: bool, registry_watcher: RegistryWatcher | None
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """The app's background tasks: live rendering, today's balance, registry watcher, audit
    checkpoints, alarm engine; cancelled at shutdown, then a last checkpoint."""
    checkpoint_s = svc.settings.audit_checkpoint_s

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(svc.live.render_loop())]
        if refresh_today_in_background:
            tasks.append(asyncio.create_task(_today_loop(svc)))
        if registry_watcher is not None:
            tasks.append(asyncio.create_task(registry_watcher.run()))
        if checkpoint_s > 0:
            tasks.append(asyncio.create_task(_checkpoint_loop(svc, checkpoint_s)))
        if svc.alarms is not None and svc.alarms.engine is not None:
            tasks.append(asyncio.create_task(svc.alarms.engine.run(), name="lingtan-alarms"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if checkpoint_s > 0:  # the head as this process leaves it
                await _checkpoint_once(svc)

    return lifespan


def _add_middleware(app: FastAPI, settings: Settings, metrics: ApiMetrics) -> None:
    # innermost first: the body limit sits right outside the app, CORS (when configured)
    # outside it so a 413 still carries the CORS headers, metrics outermost to count all
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Accept", "If-Match"],
            expose_headers=["ETag", "Retry-After", "Content-Disposition"],
            allow_credentials=False,  # keys travel in the Authorization header, not cookies
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)


def _add_storage_errors(app: FastAPI) -> None:
    @app.exception_handler(StorageUnavailable)
    async def _unavailable(_: Request, exc: StorageUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": f"time-series store unavailable: {exc}"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StorageRejected)
    async def _rejected(_: Request, exc: StorageRejected) -> JSONResponse:
        return JSONResponse({"detail": f"time-series store error: {exc}"}, status_code=502)


def _add_ops_routes(app: FastAPI, svc: Services) -> None:
    """/healthz, and /metrics unless LINGTAN_API_METRICS is off (docs/security.md)."""
    storage, live, metrics = svc.storage, svc.live, svc.metrics
    gauges = ParkGauges(metrics.registry)

    @app.get("/healthz", tags=["ops"], summary="Liveness (and whether storage answers)")
    async def healthz() -> dict[str, Any]:
        try:
            storage_ok = await asyncio.wait_for(storage.ping(), timeout=1.0)
        except (TimeoutError, Exception):
            storage_ok = False
        return {"status": "ok", "storage": "ok" if storage_ok else "unavailable"}

    async def prometheus() -> Response:
        for park in svc.registry.parks:
            n = sum(1 for d in park.devices if live.device(park.id, d.id) is not None)
            metrics.live_devices.labels(park.id).set(n)
        alarms = svc.alarms
        gauges.update(
            svc.registry.parks,
            live,
            live.clock(),
            alarms.engine if alarms is not None else None,
            alarms.view if alarms is not None else None,
        )
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if svc.settings.api_metrics:
        app.get(
            "/metrics",
            tags=["ops"],
            summary="Prometheus metrics",
            response_class=Response,
            responses=served_as(PROMETHEUS_TEXT),
        )(prometheus)


def create_app(
    settings: Settings,
    *,
    registry: Registry | RegistryHolder,
    storage: Storage,
    ledgers: LedgerStore,
    live: LiveState,
    cache: IntervalCache | None = None,
    refresh_today_in_background: bool = True,
    registry_watcher: RegistryWatcher | None = None,
    alarm_engine: EngineOptions | None = None,
    alarm_backlog: BacklogProbe | None = None,
) -> FastAPI:
    """The API over injected services. The caller owns (and closes) storage and ledgers.

    `live` is fed by the caller (`live.apply(readings)`); today's balance behind /live is
    refreshed every `settings.live_refresh_s` while the app runs (lifespan task). Pass a
    `RegistryHolder` to share registry edits with other components of the process (the
    collector in `lingtan up`), and a `registry_watcher` on it to pick up edits made by other
    processes and of the registry file while the app runs. `alarm_engine` runs the built-in
    alarm engine in the lifespan (docs/alarms.md); `alarm_backlog` tells it about the
    collector of the same process.
    """
    holder = registry if isinstance(registry, RegistryHolder) else RegistryHolder(registry)
    svc = _services(settings, holder, storage, ledgers, live, cache or IntervalCache(storage))
    if alarm_engine is not None and svc.alarms is not None:
        svc.alarms.engine = AlarmEngine(
            svc.alarms.store,
            holder,
            live,
            storage,
            options=alarm_engine,
            view=svc.alarms.view,
            backlog=alarm_backlog,
            report=lambda park: year_report(svc, park),
        )
    app = FastAPI(
        title="Lingtan API",
        version="1",
        summary="Energy and carbon monitoring for zero-carbon industrial parks (docs/api.md)",
        lifespan=_lifespan(svc, refresh_today_in_background, registry_watcher),
        # LINGTAN_API_DOCS (docs/security.md); the pages are served offline (install_offline_docs)
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    if settings.api_docs:
        install_offline_docs(app)
    app.state.services = svc
    _add_middleware(app, settings, svc.metrics)
    _add_storage_errors(app)
    _add_ops_routes(app, svc)
    for router in (
        registry_router,
        live_router,
        balance_router,
        telemetry_router,
        ledgers_router,
        quality_router,
        evaluation_router,
        web_router,
        corrections_router,
        keys_router,
        factors_router,
        alarms_router,
    ):
        app.include_router(router)
    return app


async def year_report(svc: Services, park: Park) -> dict[str, Any]:
    """This year's evaluation report of `park` as the API serves it in JSON (what the
    projection alarm rule reads)."""
    from app.accounting import get_factor_set
    from app.evaluation.report import DEFAULT_CONFIG, build_report

    now = datetime.fromtimestamp(svc.balance.clock() / _NS_PER_S, tz=UTC).astimezone(park.tz)
    year_start = datetime(now.year, 1, 1, tzinfo=park.tz)
    year_end = datetime(now.year + 1, 1, 1, tzinfo=park.tz)
    fs = get_factor_set(park.factor_set, svc.balance.factor_sets)
    result = await svc.balance.balance(park, year_start, now, "1mo")
    head = await asyncio.to_thread(svc.ledgers.audit_head)
    doc = await asyncio.to_thread(
        build_report,
        result,
        park,
        fs,
        year=now.year,
        year_start=year_start,
        year_end=year_end,
        config=DEFAULT_CONFIG,
        registry_version=svc.registry_holder.version,
        audit_head=head,
    )
    return doc.model_dump(mode="json")


def freeze_startup_heap() -> None:
    """Collect, then exempt everything alive now (registry, app, caches) from future cyclic
    GC passes. A 5,000-device registry is ~10⁵ long-lived objects; without this a full
    collection stalls the event loop for 50–150 ms every so often (measured: /live p99)."""
    gc.collect()
    gc.freeze()


def live_state(app: FastAPI) -> LiveState:
    svc: Services = app.state.services
    return svc.live
