"""API-key management over HTTP (admin only): create, list and revoke keys, each audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from app.auth.deps import Principal, require
from app.http.openapi import CONFLICT, INVALID, NEEDS_ROLE, NOT_FOUND, UNREADABLE_BODY
from app.http.services import SvcDep
from app.ledgers import (
    AlreadyRevokedError,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyInfo,
    ApiKeyList,
    ApiRole,
    LedgerError,
    NotFoundError,
)

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], responses=NEEDS_ROLE)

Admin = Annotated[Principal, Depends(require(ApiRole.ADMIN))]


@router.post(
    "",
    status_code=201,
    summary="Create an API key (all parks, or scoped to some); the plaintext `key` is in "
    "this response only",
    responses={**UNREADABLE_BODY, **INVALID},
)
async def create_key(
    *, body: ApiKeyCreate, response: Response, svc: SvcDep, who: Admin
) -> ApiKeyCreated:
    scope = body.park_scope
    if scope is not None:
        unknown = sorted(p for p in set(scope) if svc.registry.park(p) is None)
        if unknown:
            raise HTTPException(422, f"unknown park(s) {', '.join(unknown)}")
    try:
        created = await run_in_threadpool(
            lambda: svc.ledgers.create_key(body.role, body.label, who.actor, parks=scope)
        )
    except ValueError as exc:  # e.g. an admin key scoped to parks
        raise HTTPException(422, str(exc)) from None
    # the only copy of the secret: keep it out of caches
    response.headers["Cache-Control"] = "no-store"
    return created


@router.get("", summary="API keys (ids, roles, labels, who created/revoked them; no secrets)")
async def list_keys(*, include_revoked: bool = False, svc: SvcDep, _: Admin) -> ApiKeyList:
    items = await run_in_threadpool(lambda: svc.ledgers.list_keys(include_revoked=include_revoked))
    return ApiKeyList(items=items)


@router.delete(
    "/{key_id}",
    summary="Revoke an API key (refused for the last active admin key)",
    responses={**NOT_FOUND, **CONFLICT},
)
async def revoke_key(*, key_id: str, svc: SvcDep, who: Admin) -> ApiKeyInfo:
    try:
        info = await run_in_threadpool(svc.ledgers.revoke_key, key_id, who.actor)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except AlreadyRevokedError as exc:
        raise HTTPException(409, str(exc)) from None
    except LedgerError as exc:  # the last active admin key: revoking it would lock everyone out
        raise HTTPException(409, str(exc)) from None
    # The auth cache is keyed by key digest, which we do not have here: drop it all so the
    # revoked key stops working now rather than within `auth_cache_s`.
    svc.auth_cache.clear()
    return info
