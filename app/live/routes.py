"""`/live` (from memory, no database round trip) and `/live/stream` (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.accounting import get_factor_set
from app.auth.deps import Viewer
from app.http.openapi import INVALID, NEEDS_KEY, NOT_FOUND, SSE, served_as
from app.http.services import Services, SvcDep, park_or_404

router = APIRouter(
    prefix="/api/v1/parks/{park}",
    tags=["live"],
    # every route checks the park and its factor set first (`_known_park`)
    responses={**NEEDS_KEY, **NOT_FOUND, **INVALID},
)


def _with_alarms(svc: Services, park: str, body: bytes) -> bytes:
    """The /live document with the park's open alarms spliced in as `alarms` (docs/alarms.md)."""
    if svc.alarms is None or not body.endswith(b"}"):
        return body
    return body[:-1] + b',"alarms":' + svc.alarms.view.json_of(park) + b"}"


def _known_park(svc: Services, park: str) -> None:
    """404 for an unknown park; 422 (not a 500 while rendering) for an undefined factor set."""
    p = park_or_404(svc, park)
    try:
        get_factor_set(p.factor_set, svc.balance.factor_sets)
    except ValueError as exc:
        raise HTTPException(422, f"park {p.id!r}: {exc}") from None


@router.get(
    "/live",
    summary="Current power by role, live green share and carbon intensity, today so far",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
async def live(
    *,
    park: str,
    svc: SvcDep,
    _: Viewer,
    detail: bool = Query(False, description="add each device's latest values"),
) -> Response:
    _known_park(svc, park)
    body = await svc.live.document_json_async(park, detail=detail)
    return Response(_with_alarms(svc, park, body), media_type="application/json")


@router.get(
    "/live/stream",
    summary="The /live document pushed as Server-Sent Events",
    # `Response` (no media type of its own): the 200 is the event stream only, while the
    # error bodies stay JSON
    response_class=Response,
    responses=served_as(SSE),
)
async def live_stream(
    *,
    park: str,
    request: Request,
    svc: SvcDep,
    _: Viewer,
    detail: bool = Query(False, description="add each device's latest values"),
) -> EventSourceResponse:
    _known_park(svc, park)
    poll_s = svc.settings.sse_poll_s
    heartbeat_s = svc.settings.sse_heartbeat_s

    async def events() -> AsyncIterator[ServerSentEvent]:
        sent_version = -1
        sent_at = 0.0
        seq = 0
        # the first `live` event carries the open alarms; `alarm` events follow changes
        alarms_sent = svc.alarms.view.version(park) if svc.alarms is not None else -1
        while True:
            if svc.alarms is not None and svc.alarms.view.version(park) != alarms_sent:
                # `alarm`: the park's open alarms, whenever that list changes
                alarms_sent = svc.alarms.view.version(park)
                seq += 1
                data = svc.alarms.view.json_of(park).decode()
                yield ServerSentEvent(data=data, event="alarm", id=str(seq))
            version = svc.live.version(park)
            now = time.monotonic()
            if version != sent_version or now - sent_at >= heartbeat_s:
                try:
                    body = await svc.live.document_json_async(park, detail=detail)
                except KeyError:  # the park was removed from the registry meanwhile
                    detail_json = json.dumps({"detail": f"park {park!r} left the registry"})
                    yield ServerSentEvent(data=detail_json, event="removed")
                    return
                # Renders are rate-limited: the cached document may predate `version`; send
                # only what is new (the next poll picks up the fresh render).
                rendered = svc.live.rendered_version(park, detail=detail)
                if rendered != sent_version or now - sent_at >= heartbeat_s:
                    seq += 1
                    data = _with_alarms(svc, park, body).decode()
                    yield ServerSentEvent(data=data, event="live", id=str(seq))
                    sent_version, sent_at = rendered, now
            if await request.is_disconnected():
                return
            await asyncio.sleep(poll_s)

    return EventSourceResponse(events(), ping=15)
