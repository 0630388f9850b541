"""The `require(role)` dependency: Bearer key → key id and role, 401/403 with clear messages."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from app.http.services import Services, SvcDep
from app.ledgers import ApiKeyInfo, ApiRole

_NS_PER_S = 1_000_000_000
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lingtan"'}
#: Declares the Bearer scheme in the OpenAPI document (the Authorize button of /docs). It never
#: rejects anything itself (`auto_error=False`): `_bearer` parses the header, so a malformed
#: one gets our own clear 401 rather than FastAPI's 403.
API_KEY_SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="an API key: `lingtan keys create`, or LINGTAN_BOOTSTRAP_ADMIN_KEY",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key id (audit actor) and its role; `key_id` None = anonymous."""

    key_id: str | None
    role: ApiRole

    @property
    def actor(self) -> str:
        return self.key_id or "anonymous"


#: cookie set by the live page's display link (`/kiosk`): a viewer key for wall screens
KEY_COOKIE = "lingtan_key"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        # The cookie is honoured for reads only: a page on another site cannot make the
        # browser change anything with it (it is also SameSite=Strict and HttpOnly).
        if request.method in ("GET", "HEAD"):
            cookie = request.cookies.get(KEY_COOKIE, "").strip()
            return cookie or None
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401, "Authorization header must be 'Bearer <api key>'", headers=_CHALLENGE
        )
    return token.strip()


async def _lookup(svc: Services, key: str) -> ApiKeyInfo | None:
    # Cache by digest (never the key) for a few seconds: /live is polled hard and one
    # SQL lookup per poll would dominate its latency. Revocation takes effect within the TTL.
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    now = time.monotonic_ns()
    hit = svc.auth_cache.get(digest)
    if hit is not None and hit[0] > now:
        cached = hit[1]
        return cached if isinstance(cached, ApiKeyInfo) else None
    info = await run_in_threadpool(svc.ledgers.authenticate, key)
    if len(svc.auth_cache) > 10_000:
        svc.auth_cache.clear()
    svc.auth_cache[digest] = (now + int(svc.options.auth_cache_s * _NS_PER_S), info)
    return info


def require(role: ApiRole) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: the caller must hold `role` or above."""

    async def dependency(
        request: Request,
        svc: SvcDep,
        _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(API_KEY_SCHEME)],
    ) -> Principal:
        key = _bearer(request)
        if key is None:
            if role is ApiRole.VIEWER and svc.options.anonymous_read:
                return Principal(None, ApiRole.VIEWER)
            raise HTTPException(
                401, "missing API key: send 'Authorization: Bearer <key>'", headers=_CHALLENGE
            )
        info = await _lookup(svc, key)
        if info is None:
            raise HTTPException(401, "invalid or revoked API key", headers=_CHALLENGE)
        if not info.role.allows(role):
            raise HTTPException(
                403, f"this needs the {role.value} role or above; the key has {info.role.value}"
            )
        return Principal(info.id, info.role)

    return dependency


async def optional_principal(request: Request, svc: Services) -> Principal | None:
    """The caller if a valid key was sent (for responses that show more to higher roles)."""
    key = _bearer(request)
    if key is None:
        return None
    info = await _lookup(svc, key)
    return Principal(info.id, info.role) if info is not None else None


#: route-signature shorthands: `who: Manager` requires a manager (or admin) key
Viewer = Annotated[Principal, Depends(require(ApiRole.VIEWER))]
Auditor = Annotated[Principal, Depends(require(ApiRole.AUDITOR))]
Manager = Annotated[Principal, Depends(require(ApiRole.MANAGER))]
