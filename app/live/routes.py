"""`/live` (from memory, no database round trip) and `/live/stream` (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.auth.deps import Viewer
from app.http.services import SvcDep, park_or_404

router = APIRouter(prefix="/api/v1/parks/{park}", tags=["live"])


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
    park_or_404(svc, park)
    body = await svc.live.document_json_async(park, detail=detail)
    return Response(body, media_type="application/json")


@router.get("/live/stream", summary="The /live document pushed as Server-Sent Events")
async def live_stream(
    *,
    park: str,
    request: Request,
    svc: SvcDep,
    _: Viewer,
    detail: bool = Query(False, description="add each device's latest values"),
) -> EventSourceResponse:
    park_or_404(svc, park)
    poll_s = svc.options.sse_poll_s
    heartbeat_s = svc.options.sse_heartbeat_s

    async def events() -> AsyncIterator[ServerSentEvent]:
        sent_version = -1
        sent_at = 0.0
        seq = 0
        while True:
            version = svc.live.version(park)
            now = time.monotonic()
            if version != sent_version or now - sent_at >= heartbeat_s:
                body = await svc.live.document_json_async(park, detail=detail)
                # Renders are rate-limited: the cached document may predate `version`; send
                # only what is new (the next poll picks up the fresh render).
                rendered = svc.live.rendered_version(park, detail=detail)
                if rendered != sent_version or now - sent_at >= heartbeat_s:
                    seq += 1
                    yield ServerSentEvent(data=body.decode(), event="live", id=str(seq))
                    sent_version, sent_at = rendered, now
            if await request.is_disconnected():
                return
            await asyncio.sleep(poll_s)

    return EventSourceResponse(events(), ping=15)
