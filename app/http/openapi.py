"""Ready-made `responses=` declarations: the `{"detail": ...}` error bodies and file media types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.http.export import XLSX_MEDIA_TYPE

#: what FastAPI's `responses=` takes (router or route level; route entries win)
Responses = dict[int | str, dict[str, Any]]

CSV = "text/csv"
XLSX = XLSX_MEDIA_TYPE
PDF = "application/pdf"
SSE = "text/event-stream"
PROMETHEUS_TEXT = "text/plain"


class ErrorDetail(BaseModel):
    """The body of every error the API answers itself: one human-readable message."""

    detail: str


class FieldError(BaseModel):
    """One entry of FastAPI's own validation list: where, what, and which rule failed."""

    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class InvalidRequest(BaseModel):
    """422 from a route that checks more than its declared types (RFC 3339 times, windows,
    years, factor sets): the route's own message, or FastAPI's field list when the request
    does not even have the declared shape."""

    detail: str | list[FieldError]


def _error(description: str, *, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": ErrorDetail, "description": description}
    if headers is not None:
        doc["headers"] = headers
    return doc


_CHALLENGE = {
    "WWW-Authenticate": {
        "description": '`Bearer realm="lingtan"`',
        "required": True,
        "schema": {"type": "string"},
    }
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}

#: any valid key will do (viewer is the lowest role), but a key scoped to parks gets 403
#: outside them (docs/security.md), and a client sending bad keys gets 429 for a while
NEEDS_KEY: Responses = {
    401: _error("No, a malformed, an unknown or a revoked API key", headers=_CHALLENGE),
    403: _error("The key is scoped to other parks"),
    429: _error("Too many bad API keys from this client; retry later", headers=_RETRY_AFTER),
}
#: routes that need more than viewer: auditor, manager or admin
NEEDS_ROLE: Responses = {
    **NEEDS_KEY,
    403: _error("The key's role is too low for this route, or it is scoped to other parks"),
}
NOT_FOUND: Responses = {404: _error("Unknown park, device, or item of the path")}
CONFLICT: Responses = {409: _error("Duplicate id or name, or the item is already revoked")}
#: for writes guarded by `If-Match`: the item changed since the client read it
PRECONDITION_FAILED: Responses = {412: _error("The item changed since it was read")}
INVALID: Responses = {422: {"model": InvalidRequest, "description": "Invalid request"}}
#: FastAPI's own answer to a body it cannot decode at all (not UTF-8); malformed JSON is a 422
UNREADABLE_BODY: Responses = {
    400: _error("The body could not be decoded"),
    413: _error("The body is larger than the server accepts (LINGTAN_MAX_BODY_BYTES)"),
}
RANGE_TOO_LARGE: Responses = {400: _error("The window is longer than the server allows")}
#: the time-series store (InfluxDB or the embedded one) behind readings, balances, reports
STORAGE: Responses = {
    502: _error("The time-series store refused the query"),
    503: _error(
        "The time-series store is unreachable; retry later",
        headers=_RETRY_AFTER,
    ),
}

_CONTENT: dict[str, dict[str, Any]] = {
    CSV: {"schema": {"type": "string"}},
    # binary: OpenAPI 3.1 leaves the schema out
    XLSX: {},
    PDF: {},
    PROMETHEUS_TEXT: {"schema": {"type": "string"}},
    SSE: {
        # the shape FastAPI gives its own SSE routes; `data` is the JSON document
        "itemSchema": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {"type": "string", "contentMediaType": "application/json"},
                "event": {"type": "string"},
                "id": {"type": "string"},
                "retry": {"type": "integer", "minimum": 0},
            },
        }
    },
}


def served_as(*media_types: str) -> Responses:
    """A 200 that may also come as these media types, next to whatever the route declares."""
    return {200: {"content": {m: dict(_CONTENT[m]) for m in media_types}}}
