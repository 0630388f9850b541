"""Test helpers for alarms: a local HTTP webhook receiver that can be taken down and back,
and `lingtan` commands as child processes (`children` fixture, `start`, `serving`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.mosquitto import free_port


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes of a test, stopped (SIGTERM, then kill) when it ends."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`lingtan <command>` with `env`, output to `log` (a file: a chatty child never blocks)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lingtan", command],
            env={**os.environ, **env},
            cwd=log.parent,  # no stray .env / lingtan.toml from the repo
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def serving(api: httpx.AsyncClient) -> bool:
    try:
        return (await api.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


class Receiver:
    """Records every JSON body POSTed to it; `stop()`/`start()` simulate an outage (the port
    is kept, so the sender sees connection refused meanwhile)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(n) or b"null")
                outer.bodies.append(body)
                outer.paths.append(self.path)
                reply = b'{"errcode":0,"errmsg":"ok"}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def events(self) -> list[tuple[str, str, str]]:
        """(event, rule, subject) of each generic-JSON notification received, in order."""
        return [
            (b["event"], b["alarm"]["rule"], b["alarm"]["subject"])
            for b in self.bodies
            if isinstance(b, dict) and "alarm" in b
        ]
