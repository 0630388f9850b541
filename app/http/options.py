"""API options: anonymous reads, range caps, live and cache timings, limits (from `Settings`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from app.config import Settings

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """Knobs of the HTTP service. `from_settings` reads `LINGTAN_ANONYMOUS_READ` as well."""

    #: let requests without a key read (viewer level); writes and audit still need a key
    anonymous_read: bool = False
    #: longest /balance window; larger requests get 400
    max_balance_span: timedelta = timedelta(days=3700)
    #: most buckets one /balance answer may hold (15m over a year is 35,040)
    max_buckets: int = 40_000
    #: longest /readings window (streamed, so this only guards against mistakes)
    max_readings_span: timedelta = timedelta(days=400)
    #: how often today's balance behind /live is recomputed
    live_refresh_s: float = 30.0
    #: stale limit of a quantity whose reporting cadence is not known yet (seen once); after
    #: that, 3 cadences (at least 60 s): docs/live-page.md
    stale_after_s: float = 900.0
    #: SSE: send the document at least this often even when nothing changed
    sse_heartbeat_s: float = 5.0
    #: SSE: how often to look for a change
    sse_poll_s: float = 0.25
    #: cached auth results live this long (a revoked key stops working within it)
    auth_cache_s: float = 5.0
    #: request bodies above this many bytes get 413 before they are read
    max_body_bytes: int = 8 * 1024 * 1024
    #: bad API keys a client IP may send in a burst, refilled over `auth_fail_window_s`
    auth_fail_limit: int = 20
    auth_fail_window_s: float = 60.0
    #: browser origins allowed by CORS; empty = no CORS headers (closed)
    cors_origins: tuple[str, ...] = ()
    #: serve /docs, /redoc and /openapi.json
    docs: bool = True
    #: serve /metrics
    metrics: bool = True
    #: sign the audit head this often when it moved (0 = never; `lingtan audit checkpoint`)
    audit_checkpoint_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiOptions:
        raw = getattr(settings, "anonymous_read", None)
        if raw is None:
            raw = os.environ.get("LINGTAN_ANONYMOUS_READ", "")
        anonymous = raw if isinstance(raw, bool) else str(raw).strip().lower() in _TRUE
        return cls(
            anonymous_read=anonymous,
            max_body_bytes=settings.max_body_bytes,
            auth_fail_limit=settings.auth_fail_limit,
            auth_fail_window_s=settings.auth_fail_window_s,
            cors_origins=tuple(settings.cors_origins),
            docs=settings.api_docs,
            metrics=settings.api_metrics,
            audit_checkpoint_s=settings.audit_checkpoint_s,
        )
