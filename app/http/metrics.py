"""Prometheus metrics of the API on its own registry, and a tiny ASGI timing middleware."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    """Counters/histograms of one app instance (a registry per app, so tests don't collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lingtan_api_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lingtan_api_request_seconds",
            "HTTP request duration by route template",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.live_devices = Gauge(
            "lingtan_api_live_devices",
            "Devices with a live value, by park",
            ["park"],
            registry=self.registry,
        )
        self.live_readings = Counter(
            "lingtan_api_live_readings_total",
            "Readings applied to the live state",
            registry=self.registry,
        )
        self.balance_cache = Counter(
            "lingtan_api_balance_cache_days_total",
            "Interval-cache lookups of park-days, by result",
            ["result"],
            registry=self.registry,
        )
        self.today_refresh_errors = Counter(
            "lingtan_api_today_refresh_errors_total",
            "Failed background refreshes of today's balance",
            ["park"],
            registry=self.registry,
        )


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(name, scope.get("method", ""), str(status[0])).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - t0)
