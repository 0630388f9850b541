"""Correction endpoints: `POST/GET /parks/{park}/corrections`, `DELETE .../{id}` (revoke)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from app.accounting.buckets import to_ns
from app.auth.deps import Manager, Viewer
from app.corrections.apply import check_correction
from app.corrections.schemas import CorrectionIn, CorrectionList, CorrectionRecord
from app.http.openapi import (
    CONFLICT,
    INVALID,
    NEEDS_KEY,
    NEEDS_ROLE,
    NOT_FOUND,
    UNREADABLE_BODY,
)
from app.http.services import SvcDep, park_or_404
from app.ledgers.errors import AlreadyRevokedError, DuplicateIdError, NotFoundError

router = APIRouter(
    prefix="/api/v1/parks/{park}/corrections",
    tags=["corrections"],
    responses={**NEEDS_KEY, **NOT_FOUND},
)


@router.post(
    "",
    status_code=201,
    summary="Record a manual correction of a device's counter over an aligned window",
    responses={**NEEDS_ROLE, **CONFLICT, **INVALID, **UNREADABLE_BODY},
)
async def add_correction(
    *,
    park: str,
    body: CorrectionIn,
    svc: SvcDep,
    who: Manager,
) -> CorrectionRecord:
    p = park_or_404(svc, park)
    problem = check_correction(p, body.device, body.quantity, to_ns(body.start), to_ns(body.end))
    if problem is not None:
        raise HTTPException(422, problem)
    try:
        rec = await run_in_threadpool(svc.ledgers.add_correction, park, body, who.actor)
    except DuplicateIdError as exc:
        raise HTTPException(409, str(exc)) from None
    return rec


@router.get("", summary="A park's manual corrections, in the order they apply")
async def list_corrections(
    *,
    park: str,
    include_revoked: bool = False,
    svc: SvcDep,
    _: Viewer,
) -> CorrectionList:
    park_or_404(svc, park)
    items = await run_in_threadpool(
        lambda: svc.ledgers.list_corrections(park, include_revoked=include_revoked)
    )
    return CorrectionList(items=items)


@router.delete(
    "/{correction_id}",
    summary="Revoke a correction (kept, no longer applied)",
    responses={**NEEDS_ROLE, **CONFLICT, **INVALID},
)
async def revoke_correction(
    *,
    park: str,
    correction_id: str,
    reason: str = "",
    svc: SvcDep,
    who: Manager,
) -> CorrectionRecord:
    park_or_404(svc, park)
    if len(reason) > 500:
        raise HTTPException(422, "reason longer than 500 characters")
    try:
        rec = await run_in_threadpool(
            lambda: svc.ledgers.revoke_correction(correction_id, who.actor, reason, park=park)
        )
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except AlreadyRevokedError as exc:
        raise HTTPException(409, str(exc)) from None
    return rec
