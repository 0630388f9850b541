"""Ledger endpoints: certificates and offsets per park (add, list, revoke: audited), audit log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from app.auth.deps import Auditor, Manager, Principal, Viewer, require
from app.http.openapi import CONFLICT, NEEDS_KEY, NEEDS_ROLE, NOT_FOUND, UNREADABLE_BODY
from app.http.services import Services, SvcDep, park_or_404
from app.ledgers.checkpoints import Checkpointer, check_checkpoints
from app.ledgers.errors import AlreadyRevokedError, DuplicateIdError, NotFoundError
from app.ledgers.roles import ApiRole
from app.ledgers.schemas import (
    AuditList,
    AuditProblem,
    CertificateIn,
    CertificateList,
    CertificateRecord,
    OffsetIn,
    OffsetList,
    OffsetRecord,
    RevokeIn,
)

router = APIRouter(tags=["ledgers"], responses=NEEDS_KEY)

_ADD = {**NEEDS_ROLE, **NOT_FOUND, **CONFLICT, **UNREADABLE_BODY}
#: revoking takes an entry out of every balance and report from its start: admin only
Admin = Annotated[Principal, Depends(require(ApiRole.ADMIN))]
_T = TypeVar("_T")


async def _revoke(revoke: Callable[[], _T]) -> _T:
    """Run a store revocation: 404 unknown id or another park's, 409 already revoked."""
    try:
        return await run_in_threadpool(revoke)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except AlreadyRevokedError as exc:
        raise HTTPException(409, str(exc)) from None


@router.post(
    "/api/v1/parks/{park}/certificates",
    status_code=201,
    summary="Record a green certificate batch (GEC, 1 = 1 MWh) or green-power trade",
    responses=_ADD,
)
async def add_certificate(
    *,
    park: str,
    body: CertificateIn,
    svc: SvcDep,
    who: Manager,
) -> CertificateRecord:
    park_or_404(svc, park)
    try:
        rec = await run_in_threadpool(svc.ledgers.add_certificate, park, body, who.actor)
    except DuplicateIdError as exc:
        raise HTTPException(409, str(exc)) from None
    return rec


@router.get(
    "/api/v1/parks/{park}/certificates",
    summary="A park's certificates and trades",
    responses=NOT_FOUND,
)
async def list_certificates(
    *,
    park: str,
    include_revoked: bool = False,
    svc: SvcDep,
    _: Viewer,
) -> CertificateList:
    park_or_404(svc, park)
    items = await run_in_threadpool(
        lambda: svc.ledgers.list_certificates(park, include_revoked=include_revoked)
    )
    return CertificateList(items=items)


@router.post(
    "/api/v1/parks/{park}/certificates/{cert_id}/revoke",
    summary="Revoke a certificate or trade (kept, no longer applied; admin)",
    responses=_ADD,
)
async def revoke_certificate(
    *,
    park: str,
    cert_id: str,
    body: RevokeIn,
    svc: SvcDep,
    who: Admin,
) -> CertificateRecord:
    park_or_404(svc, park)
    return await _revoke(
        lambda: svc.ledgers.revoke_certificate(cert_id, who.actor, body.reason, park=park)
    )


@router.post(
    "/api/v1/parks/{park}/offsets",
    status_code=201,
    summary="Record a carbon offset (CCER, sink, ...) in tCO2",
    responses=_ADD,
)
async def add_offset(
    *,
    park: str,
    body: OffsetIn,
    svc: SvcDep,
    who: Manager,
) -> OffsetRecord:
    park_or_404(svc, park)
    try:
        rec = await run_in_threadpool(svc.ledgers.add_offset, park, body, who.actor)
    except DuplicateIdError as exc:
        raise HTTPException(409, str(exc)) from None
    return rec


@router.get("/api/v1/parks/{park}/offsets", summary="A park's carbon offsets", responses=NOT_FOUND)
async def list_offsets(
    *,
    park: str,
    include_revoked: bool = False,
    svc: SvcDep,
    _: Viewer,
) -> OffsetList:
    park_or_404(svc, park)
    items = await run_in_threadpool(
        lambda: svc.ledgers.list_offsets(park, include_revoked=include_revoked)
    )
    return OffsetList(items=items)


@router.post(
    "/api/v1/parks/{park}/offsets/{offset_id}/revoke",
    summary="Revoke a carbon offset (kept, no longer applied; admin)",
    responses=_ADD,
)
async def revoke_offset(
    *,
    park: str,
    offset_id: str,
    body: RevokeIn,
    svc: SvcDep,
    who: Admin,
) -> OffsetRecord:
    park_or_404(svc, park)
    return await _revoke(
        lambda: svc.ledgers.revoke_offset(offset_id, who.actor, body.reason, park=park)
    )


@router.get(
    "/api/v1/audit", summary="The tamper-evident audit log (hash chain)", responses=NEEDS_ROLE
)
async def audit(
    *,
    # bounded to SQL's BIGINT: a larger integer overflowed the driver (a 500, found by fuzzing)
    after_seq: int = Query(
        0, ge=0, le=2**63 - 1, description="page: entries with seq greater than this"
    ),
    limit: int = Query(1000, ge=1, le=10_000),
    verify: bool = Query(
        False,
        description="re-verify the whole chain, every ledger row and the signed checkpoints",
    ),
    svc: SvcDep,
    who: Auditor,
) -> dict[str, Any]:
    def load() -> dict[str, Any]:
        # a key scoped to parks sees the entries about those parks only (and the head)
        entries = svc.ledgers.list_audit(after_seq=after_seq, limit=limit, parks=who.parks)
        seq, digest = svc.ledgers.audit_head()
        doc: dict[str, Any] = {
            **AuditList(items=entries).model_dump(mode="json"),
            "head": {"seq": seq, "hash": digest},
        }
        if verify:
            anchors: list[tuple[int, str]] = []
            problems: list[AuditProblem] = []
            if svc.checkpointer is not None:
                cps, bad = svc.checkpointer.file.read()
                if cps or bad:
                    anchors, problems = check_checkpoints(cps, svc.checkpointer.key.public, bad)
            problems += svc.ledgers.verify_audit(anchors=anchors)
            doc["problems"] = [
                p.model_dump(mode="json")
                for p in problems
                if who.parks is None
                or (p.table is None)
                or (p.park is not None and p.park in who.parks)
            ]
        return doc

    return await run_in_threadpool(load)


@router.get(
    "/api/v1/audit/checkpoints",
    summary="Signed checkpoints of the audit chain head, newest last, with the public key",
    responses=NEEDS_ROLE,
)
async def audit_checkpoints(
    *, limit: int = Query(100, ge=1, le=10_000), svc: SvcDep, _: Auditor
) -> dict[str, Any]:
    checkpointer = _checkpointer(svc)

    def load() -> dict[str, Any]:
        items = [c.to_json() for c in checkpointer.history(limit)]
        return {"items": items, **checkpointer.public_doc()}

    return await run_in_threadpool(load)


@router.get(
    "/api/v1/audit/checkpoint/latest",
    summary="The latest signed checkpoint of the audit chain head, with the public key",
    responses={**NEEDS_ROLE, 404: NOT_FOUND[404]},
)
async def audit_checkpoint_latest(*, svc: SvcDep, _: Auditor) -> dict[str, Any]:
    checkpointer = _checkpointer(svc)

    def load() -> dict[str, Any] | None:
        latest = checkpointer.file.latest()
        if latest is None:
            return None
        return {"checkpoint": latest.to_json(), **checkpointer.public_doc()}

    doc = await run_in_threadpool(load)
    if doc is None:
        raise HTTPException(404, "no checkpoint yet (the audit log is empty or none was signed)")
    return doc


def _checkpointer(svc: Services) -> Checkpointer:
    if svc.checkpointer is None:
        raise HTTPException(404, "audit checkpoints are not configured on this server")
    return svc.checkpointer
