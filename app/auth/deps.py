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
    """Who is calling: the key id (audit actor), its role and the parks it may act on
    (`parks` None = every park); `key_id` None = anonymous."""

    key_id: str | None
    role: ApiRole
    parks: frozenset[str] | None = None

    @property
    def actor(self) -> str:
        return self.key_id or "anonymous"

    @property
    def all_parks(self) -> bool:
        return self.parks is None

    def covers(self, park: str) -> bool:
        return self.parks is None or park in self.parks


def client_address(request: Request) -> str:
    """The client IP the limits count by (uvicorn's `--proxy-headers` / `--forwarded-allow-ips`
    decide whether that is the proxy's or the forwarded one)."""
    return request.client.host if request.client is not None else "unknown"


def too_many(retry_after: int) -> HTTPException:
    return HTTPException(
        429,
        f"too many bad API keys from this address: retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


#: cookie set by the live page's display link (`/kiosk`): a viewer key for wall screens
KEY_COOKIE = "lingtan_key"


def _bearer(request: Request, svc: Services) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        # The cookie is honoured for reads only: a page on another site cannot make the
        # browser change anything with it (it is also SameSite=Strict and HttpOnly).
        if request.method not in ("GET", "HEAD"):
            return None
        cookie = request.cookies.get(KEY_COOKIE, "").strip()
        if not cookie:
            return None
        retry = svc.auth_failures.retry_after(client_address(request))
        if retry is not None:
            raise too_many(retry)
        return cookie
    client = client_address(request)
    retry = svc.auth_failures.retry_after(client)
    if retry is not None:  # before the lookup: guessing gets no answer at all
        raise too_many(retry)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        svc.auth_failures.failed(client)
        raise HTTPException(
            401, "Authorization header must be 'Bearer <api key>'", headers=_CHALLENGE
        )
    return token.strip()


async def _authenticate(request: Request, svc: Services, key: str) -> ApiKeyInfo:
    info = await _lookup(svc, key)
    if info is None:
        svc.auth_failures.failed(client_address(request))
        raise HTTPException(401, "invalid or revoked API key", headers=_CHALLENGE)
    return info


def _principal(info: ApiKeyInfo) -> Principal:
    return Principal(info.id, info.role, info.park_scope)


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
    svc.auth_cache[digest] = (now + int(svc.settings.auth_cache_s * _NS_PER_S), info)
    return info


def _check_scope(request: Request, who: Principal, *, all_parks: bool) -> None:
    """403 outside the key's parks: the `{park}` of the path, or any park at all for
    routes over every park (the whole registry)."""
    if who.parks is None:
        return
    if all_parks:
        raise HTTPException(403, "this route covers every park; the key is scoped to some")
    park = request.path_params.get("park")
    if isinstance(park, str) and park not in who.parks:
        raise HTTPException(403, f"this key is not scoped to park {park!r}")


def require(role: ApiRole, *, all_parks: bool = False) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: the caller must hold `role` or above, and cover the park of the
    path (every route with a `{park}` path parameter), or every park with `all_parks`."""

    async def dependency(
        request: Request,
        svc: SvcDep,
        _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(API_KEY_SCHEME)],
    ) -> Principal:
        key = _bearer(request, svc)
        if key is None:
            if role is ApiRole.VIEWER and svc.settings.anonymous_read:
                return Principal(None, ApiRole.VIEWER)
            raise HTTPException(
                401, "missing API key: send 'Authorization: Bearer <key>'", headers=_CHALLENGE
            )
        info = await _authenticate(request, svc, key)
        who = _principal(info)
        # the park first: outside its parks a key learns nothing about the route
        _check_scope(request, who, all_parks=all_parks)
        if not info.role.allows(role):
            raise HTTPException(
                403, f"this needs the {role.value} role or above; the key has {info.role.value}"
            )
        return who

    return dependency


#: route-signature shorthands: `who: Manager` requires a manager (or admin) key
Viewer = Annotated[Principal, Depends(require(ApiRole.VIEWER))]
Auditor = Annotated[Principal, Depends(require(ApiRole.AUDITOR))]
Manager = Annotated[Principal, Depends(require(ApiRole.MANAGER))]
#: the same over every park (the whole registry): keys scoped to parks get 403
AllParksViewer = Annotated[Principal, Depends(require(ApiRole.VIEWER, all_parks=True))]
AllParksAuditor = Annotated[Principal, Depends(require(ApiRole.AUDITOR, all_parks=True))]
AllParksManager = Annotated[Principal, Depends(require(ApiRole.MANAGER, all_parks=True))]
