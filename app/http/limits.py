"""Request limits: the body-size ASGI middleware (413 before reading) and the per-client
limiter of authentication failures (429 with Retry-After); docs/security.md."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _BodyTooLarge(Exception):
    """Raised into the app by `receive` once the streamed body passed the limit."""


def _too_large(limit: int) -> tuple[Message, Message]:
    body = json.dumps({"detail": f"request body larger than the limit of {limit} bytes"}).encode(
        "utf-8"
    )
    start: Message = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


class BodyLimitMiddleware:
    """Refuse request bodies over `limit` bytes with 413 without reading them.

    A declared Content-Length over the limit is answered at once, before the app (and its
    authentication) runs, so no byte of the body is read. A body without one (chunked) is
    counted as the app reads it: past the limit the app's `receive` fails and the answer,
    whatever the app made of the failure, is 413. The server then closes the connection
    rather than drain the rest.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1  # the server itself refuses a malformed length
                if declared > self.limit:
                    for message in _too_large(self.limit):
                        await send(message)
                    return
        seen = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                if started:
                    return
                started = True
                if exceeded:  # the app turned the failed read into some answer: make it 413
                    start, body = _too_large(self.limit)
                    await send(start)
                    await send(body)
                    return
            elif exceeded:
                return  # the body of the replaced answer
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not started:
                started = True
                for message in _too_large(self.limit):
                    await send(message)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class FailureLimiter:
    """Per-client token bucket of authentication failures.

    A client may fail `limit` times in a burst; the allowance refills at `limit` per
    `window_s`. While it is used up, every request of that client that carries a key gets
    429 (checked before the key is looked up, so guessing stops). Memory is bounded: past
    `max_clients` entries, the fully refilled ones are dropped (all, if that is not enough).
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        self.limit = limit
        self.rate = limit / window_s
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, _Bucket] = {}

    def _tokens(self, bucket: _Bucket, now: float) -> float:
        return min(float(self.limit), bucket.tokens + (now - bucket.at) * self.rate)

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until `client` may try a key again, or None when it may now."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return None
        tokens = self._tokens(bucket, self._clock())
        if tokens >= 1.0:
            return None
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def failed(self, client: str) -> None:
        """Count one failure of `client`."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self._max_clients:
                self._prune(now)
            bucket = self._buckets[client] = _Bucket(float(self.limit), now)
        bucket.tokens = max(0.0, self._tokens(bucket, now) - 1.0)
        bucket.at = now

    def _prune(self, now: float) -> None:
        full = [c for c, b in self._buckets.items() if self._tokens(b, now) >= self.limit]
        for c in full:
            del self._buckets[c]
        if len(self._buckets) >= self._max_clients:
            self._buckets.clear()
