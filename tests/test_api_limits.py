"""Request limits on the real app: 413 before the body is read (real uvicorn, raw sockets),
429 with Retry-After after bad keys, CORS closed by default and open to configured origins,
out-of-range times a 422, /docs and /metrics behind settings."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from app.config import Settings
from app.http.limits import FailureLimiter
from app.ledgers import LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.storage.embedded import EmbeddedStorage
from tests.api_support import Api, make_api, registry
from tests.fixtures.influx import InfluxServer, free_port

LIMIT = 64 * 1024


def build(tmp: Path, settings: Settings) -> tuple[FastAPI, LedgerStore, EmbeddedStorage]:
    reg = registry()
    ledgers = LedgerStore(f"sqlite:///{tmp}/ledgers.db")
    storage = EmbeddedStorage(tmp / "store.sqlite")
    app = create_app(
        settings,
        registry=reg,
        storage=storage,
        ledgers=ledgers,
        live=LiveState(reg),
        refresh_today_in_background=False,
    )
    return app, ledgers, storage


class Server(threading.Thread):
    """The app under real uvicorn in a thread (its own event loop)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(daemon=True)
        self.tmp, self.port = tmp, free_port()
        self.server: uvicorn.Server | None = None
        self.admin_key = ""

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        app, ledgers, storage = build(
            self.tmp, Settings(data_dir=self.tmp, max_body_bytes=LIMIT, audit_checkpoint_s=0)
        )
        self.admin_key = ledgers.create_key("admin", "t").key
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        try:
            await self.server.serve()
        finally:
            await storage.close()
            ledgers.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("limits"))
    s.start()
    deadline = time.monotonic() + 15
    while not (s.server is not None and s.server.started):
        assert time.monotonic() < deadline and s.is_alive(), "API did not start"
        time.sleep(0.02)
    yield s
    assert s.server is not None
    s.server.should_exit = True
    s.join(timeout=10)


def _read_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_huge_declared_body_is_refused_before_it_is_sent(server: Server) -> None:
    """10 GB announced, 10 bytes sent: the 413 comes at once, anonymous or not."""
    for auth in ("", f"Authorization: Bearer {server.admin_key}\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            t0 = time.monotonic()
            sock.sendall(
                (
                    "POST /api/v1/parks/demo/certificates HTTP/1.1\r\nHost: t\r\n"
                    f"{auth}Content-Type: application/json\r\n"
                    "Content-Length: 10000000000\r\n\r\n0123456789"
                ).encode()
            )
            head = _read_response(sock, timeout=5)
            elapsed = time.monotonic() - t0
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert elapsed < 2.0  # answered without waiting for (or reading) the body


def test_a_streamed_body_is_cut_off_at_the_limit(server: Server) -> None:
    """Chunked, no length: counted as read, and refused once past the limit; the sender
    cannot push the rest (the server stops reading)."""
    total = 64 * 1024 * 1024
    chunk = b"x" * 16384
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            (
                "PUT /api/v1/registry HTTP/1.1\r\nHost: t\r\n"
                f"Authorization: Bearer {server.admin_key}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        sock.setblocking(False)
        answered = False
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 2.0)
            if readable:
                answered = True
                break
            if not writable:
                break  # the server stopped reading: the buffers are full
            try:
                sent += sock.send(frame) and len(chunk)
            except (BlockingIOError, ConnectionResetError, BrokenPipeError):
                break
        sock.setblocking(True)
        head = _read_response(sock, timeout=5)
    assert head.startswith(b"HTTP/1.1 413 "), (answered, sent, head[:200])
    assert sent < total // 2, sent  # far from all of it went through


def test_a_body_under_the_limit_is_read(server: Server) -> None:
    r = httpx.post(
        f"http://127.0.0.1:{server.port}/api/v1/parks/demo/offsets",
        headers={"Authorization": f"Bearer {server.admin_key}"},
        json={"id": "O1", "kind": "ccer", "tco2": 1, "date": "2025-01-01", "source": "s" * 400},
    )
    assert r.status_code == 201, r.text


# -- 429 ----------------------------------------------------------------------------------


def test_limiter_refills_at_limit_per_window() -> None:
    now = [100.0]
    lim = FailureLimiter(3, 60.0, clock=lambda: now[0])  # refill: 1 every 20 s
    for _ in range(3):
        assert lim.retry_after("a") is None
        lim.failed("a")
    assert lim.retry_after("a") == 20
    assert lim.retry_after("b") is None  # per client
    now[0] += 15
    assert lim.retry_after("a") == 5
    now[0] += 5
    assert lim.retry_after("a") is None  # one attempt back
    lim.failed("a")
    assert lim.retry_after("a") == 20
    now[0] += 600
    assert lim.retry_after("a") is None
    for _ in range(3):
        lim.failed("a")  # capped at the burst: no debt carried from the idle time
    assert lim.retry_after("a") == 20


def test_limiter_memory_is_bounded() -> None:
    now = [0.0]
    lim = FailureLimiter(2, 10.0, clock=lambda: now[0], max_clients=100)
    for i in range(1000):
        lim.failed(f"c{i}")
        lim.failed(f"c{i}")
    assert len(lim._buckets) <= 100
    assert lim.retry_after("c999") == 5  # the latest client is still limited


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in make_api(
        fresh_influx_db.url,
        fresh_influx_db.database,
        sqlite_url,
        tmp_path,
        settings={"auth_fail_limit": 3, "auth_fail_window_s": 60.0},
    ):
        yield a


async def test_bad_keys_get_429_with_retry_after(api: Api) -> None:
    bad = {"Authorization": "Bearer lt_knope_guess"}
    for _ in range(3):
        assert (await api.client.get("/api/v1/parks", headers=bad)).status_code == 401
    r = await api.client.get("/api/v1/parks", headers=bad)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "20"  # 60 s / 3 per token
    assert r.json()["detail"].startswith("too many bad API keys")
    # while limited, even a right key from there gets no answer (guessing gains nothing)
    assert (await api.get("/api/v1/parks")).status_code == 429
    # a malformed header counts too, and requests without a key are not affected
    assert (await api.client.get("/healthz")).status_code == 200
    # another client address is not limited
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app, client=("10.0.0.9", 4000)),
        base_url="http://test",
    )
    async with other:
        r = await other.get("/api/v1/parks", headers=api.auth("viewer"))
        assert r.status_code == 200
        for _ in range(3):
            r = await other.get("/api/v1/parks", headers={"Authorization": "Basic eDp5"})
            assert r.status_code == 401
        assert (await other.get("/api/v1/parks", headers=bad)).status_code == 429


# -- CORS ---------------------------------------------------------------------------------


async def _preflight(client: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await client.options(
        "/api/v1/parks",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


async def test_cors_is_closed_by_default(api: Api) -> None:
    r = await _preflight(api.client, "https://evil.example")
    assert r.status_code == 405
    assert "access-control-allow-origin" not in r.headers
    r = await api.get("/api/v1/parks", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


async def test_cors_allows_configured_origins_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, cors_origins="https://ops.example")  # type: ignore[arg-type]
    assert settings.cors_origins == ["https://ops.example"]
    app, ledgers, storage = build(tmp_path, settings)
    key = ledgers.create_key("viewer").key
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await _preflight(client, "https://ops.example")
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == "https://ops.example"
            assert "authorization" in r.headers["access-control-allow-headers"].lower()
            r = await client.get(
                "/api/v1/parks",
                headers={"Origin": "https://ops.example", "Authorization": f"Bearer {key}"},
            )
            assert r.headers["access-control-allow-origin"] == "https://ops.example"
            r = await _preflight(client, "https://evil.example")
            assert r.status_code == 400
            assert "access-control-allow-origin" not in r.headers
    finally:
        await storage.close()
        ledgers.close()


# -- times, docs, metrics -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/deadletters?end=9999-12-31T23:59:59%2B14:00",
        "/api/v1/deadletters?start=0001-01-01T00:00:00%2B14:00",
        "/api/v1/parks/demo/readings?start=2026-01-01T00:00:00Z&end=2262-04-12T00:00:00Z",
        "/api/v1/parks/demo/balance?start=1800-01-01T00:00:00Z&end=2026-01-01T00:00:00Z",
        "/api/v1/parks/demo/quality?start=2026-01-01T00:00:00Z&end=9999-01-01T00:00:00Z",
    ],
)
async def test_out_of_range_times_are_422(api: Api, url: str) -> None:
    r = await api.get(url)
    assert r.status_code == 422, r.text
    assert "outside the supported times, 1900-01-01 to before 2200-01-01 UTC" in r.json()["detail"]


async def test_docs_and_metrics_can_be_switched_off(tmp_path: Path) -> None:
    for on in (True, False):
        settings = Settings(data_dir=tmp_path, api_docs=on, api_metrics=on)
        app, ledgers, storage = build(tmp_path, settings)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for url in ("/docs", "/redoc", "/openapi.json", "/metrics"):
                    r = await client.get(url)
                    assert r.status_code == (200 if on else 404), (on, url)
        finally:
            await storage.close()
            ledgers.close()
