"""`GET /parks/{park}/alarms` (active and history, JSON or CSV) and `POST .../{id}/ack`."""

from __future__ import annotations

import csv
import io
from typing import Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.alarms.store import AlarmRecord, AlarmStateError, AlarmStore
from app.auth.deps import Manager, Viewer
from app.http.export import CSV_MEDIA_TYPE, attachment, negotiate
from app.http.openapi import (
    CONFLICT,
    CSV,
    INVALID,
    NEEDS_KEY,
    NEEDS_ROLE,
    NOT_FOUND,
    UNREADABLE_BODY,
    served_as,
)
from app.http.services import Services, SvcDep, park_or_404
from app.ledgers.errors import NotFoundError

router = APIRouter(
    prefix="/api/v1/parks/{park}/alarms",
    tags=["alarms"],
    responses={**NEEDS_KEY, **NOT_FOUND},
)

CSV_COLUMNS = (
    "id",
    "rule",
    "subject",
    "severity",
    "state",
    "value",
    "threshold",
    "fired_at",
    "acked_at",
    "acked_by",
    "ack_reason",
    "resolved_at",
    "message_en",
    "message_zh",
)


class AlarmList(BaseModel):
    items: list[AlarmRecord]


class AckIn(BaseModel):
    """Why the alarm is acknowledged (kept in the alarm log and the audit log)."""

    reason: str = Field(min_length=1, max_length=500)


def _store(svc: Services) -> AlarmStore:
    if svc.alarms is None:  # pragma: no cover - create_app always sets it
        raise HTTPException(503, "alarms are not set up in this process")
    return svc.alarms.store


def _csv(items: list[AlarmRecord]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for a in items:
        w.writerow(
            [
                a.id,
                a.rule,
                a.subject,
                a.severity,
                a.state,
                "" if a.value is None else a.value,
                "" if a.threshold is None else a.threshold,
                a.fired_at.isoformat(),
                a.acked_at.isoformat() if a.acked_at else "",
                a.acked_by or "",
                a.ack_reason or "",
                a.resolved_at.isoformat() if a.resolved_at else "",
                a.message["en"],
                a.message["zh"],
            ]
        )
    return out.getvalue()


@router.get(
    "",
    summary="A park's alarms: open ones (active), resolved ones (history) or all, newest first",
    response_model=AlarmList,
    responses={**INVALID, **served_as(CSV)},
)
async def list_alarms(
    *,
    park: str,
    request: Request,
    svc: SvcDep,
    _: Viewer,
    state: Literal["active", "history", "all"] = Query("all", description="active|history|all"),
    limit: int = Query(500, ge=1, le=10_000),
    format: str | None = Query(None, pattern="^(json|csv)$", description="json|csv"),
) -> AlarmList | Response:
    park_or_404(svc, park)
    items = await run_in_threadpool(_store(svc).list_alarms, park, which=state, limit=limit)
    if negotiate(request, format) == "csv":
        return Response(
            _csv(items), media_type=CSV_MEDIA_TYPE, headers=attachment(f"alarms-{park}.csv")
        )
    return AlarmList(items=items)


@router.post(
    "/{alarm_id}/ack",
    summary="Acknowledge a firing alarm (manager): who and why go to the log and the audit",
    responses={**NEEDS_ROLE, **CONFLICT, **INVALID, **UNREADABLE_BODY},
)
async def acknowledge(
    *,
    park: str,
    # the id column is a 32-bit integer on PostgreSQL: larger ids cannot exist (422, not 500)
    alarm_id: int = Path(ge=1, le=2**31 - 1),
    body: AckIn,
    svc: SvcDep,
    who: Manager,
) -> AlarmRecord:
    park_or_404(svc, park)
    store = _store(svc)
    try:
        rec = await run_in_threadpool(store.acknowledge, park, alarm_id, who.actor, body.reason)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except AlarmStateError as exc:
        raise HTTPException(409, str(exc)) from None
    if svc.alarms is not None:
        svc.alarms.view.update(await run_in_threadpool(store.open_alarms))
    return rec
