"""Test helpers for alarms: a local HTTP webhook receiver that can be taken down and back."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fixtures.mosquitto import free_port


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
