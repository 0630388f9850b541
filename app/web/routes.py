"""HTTP routes of the built-in live page: park picker, the page, display sign-in, static files."""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path
from string import Template
from typing import Annotated, Literal
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from app.auth.deps import KEY_COOKIE, client_address, too_many
from app.http.services import Services, SvcDep, park_or_404
from app.ledgers import ApiRole

_HERE = Path(__file__).resolve().parent
STATIC_DIR = _HERE / "static"
_TEMPLATES = _HERE / "templates"

Lang = Literal["zh", "en"]
LangQuery = Annotated[Lang, Query(description="zh (default) or en")]

_PICKER_TITLE = {"zh": "灵碳 · 选择园区", "en": "Lingtan · choose a park"}

router = APIRouter(include_in_schema=False)


def _template(name: str) -> Template:
    return Template((_TEMPLATES / name).read_text(encoding="utf-8"))


_KEY_ERRORS = {
    401: {
        "zh": "密钥无效或已吊销。请用 `lingtan keys create --role viewer` 创建只读密钥。",
        "en": "Invalid or revoked key. Create a viewer key: `lingtan keys create --role viewer`.",
    },
    403: {
        "zh": "大屏链接只接受只读（viewer）密钥，此密钥的角色是 {role}。"
        "请用 `lingtan keys create --role viewer` 创建一个。",
        "en": "A display link takes a viewer key only; this key has the {role} role. "
        "Create one with `lingtan keys create --role viewer`.",
    },
    404: {  # answered 403: the park exists, the key may not read it
        "zh": "此密钥无权查看园区 {park}。",
        "en": "This key may not read park {park}.",
    },
}
#: a display stays signed in for about a year (browsers cap cookies at 400 days)
_COOKIE_MAX_AGE_S = 365 * 24 * 3600


def _page_url(park: str, lang: Lang, display: bool) -> str:
    return f"/parks/{quote(park, safe='')}?lang={lang}" + ("&display=1" if display else "")


def _message_page(status: int, lang: Lang, text: str) -> HTMLResponse:
    body = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/live.css">'
        f'<title>Lingtan</title></head><body><main><p class="message">{html.escape(text)}'
        "</p></main></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


async def _sign_in(
    request: Request, svc: Services, park: str, key: str, lang: Lang, display: bool
) -> Response:
    """Check a viewer key and keep it in an HttpOnly cookie (`lingtan_key`), then go to the
    page, whose reads then need no prompt (docs/live-page.md). Only viewer keys: the cookie
    sits in a browser on a wall, it must not be able to change anything."""
    park_or_404(svc, park)
    key = key.strip()
    client = client_address(request)
    retry = svc.auth_failures.retry_after(client)
    if retry is not None:  # the same limit as bad Bearer keys (docs/security.md)
        raise too_many(retry)
    info = await run_in_threadpool(svc.ledgers.authenticate, key) if key else None
    if info is None:
        svc.auth_failures.failed(client)
        return _message_page(401, lang, _KEY_ERRORS[401][lang])
    if info.role is not ApiRole.VIEWER:
        return _message_page(403, lang, _KEY_ERRORS[403][lang].format(role=info.role.value))
    # a key scoped to parks (None: every park) opens only those
    scope = info.park_scope
    if scope is not None and park not in scope:
        return _message_page(403, lang, _KEY_ERRORS[404][lang].format(park=park))
    resp = RedirectResponse(_page_url(park, lang, display), status_code=303)
    resp.set_cookie(
        KEY_COOKIE,
        key,
        max_age=_COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    # the key was in the address: keep it out of the next page's Referer and caches
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-store"
    return resp


@router.get("/kiosk", response_class=Response)
async def kiosk(
    request: Request,
    svc: SvcDep,
    park: Annotated[str, Query(description="park id")],
    key: Annotated[str, Query(description="a viewer API key")] = "",
    lang: LangQuery = "zh",
) -> Response:
    """Display link for a wall screen: `/kiosk?park=<id>&key=<viewer key>` signs the browser
    in (cookie) and opens the read-only full-screen page. Without a key (anonymous reading
    on) it just opens the display."""
    if not key and svc.settings.anonymous_read:
        park_or_404(svc, park)
        return RedirectResponse(_page_url(park, lang, True), status_code=303)
    return await _sign_in(request, svc, park, key, lang, display=True)


@router.post("/kiosk", response_class=Response)
async def kiosk_form(request: Request, svc: SvcDep) -> Response:
    """The page's key form (urlencoded `park`, `key`, `lang`, optional `display`): the key
    travels in the body, never in an address or a log line."""
    if len(raw := await request.body()) > 4096:
        raise HTTPException(413, "form too large")
    form = parse_qs(raw.decode("utf-8", "replace"))
    lang: Lang = "en" if form.get("lang", [""])[0] == "en" else "zh"
    park = form.get("park", [""])[0]
    display = form.get("display", [""])[0] == "1"
    return await _sign_in(request, svc, park, form.get("key", [""])[0], lang, display)


@router.get("/kiosk/forget", response_class=Response)
async def kiosk_forget(svc: SvcDep, park: str, lang: LangQuery = "zh") -> Response:
    """Sign this browser out: the key cookie is removed."""
    park_or_404(svc, park)
    resp = RedirectResponse(_page_url(park, lang, False), status_code=303)
    resp.delete_cookie(KEY_COOKIE, path="/", httponly=True, samesite="strict")
    return resp


@router.get("/", response_class=Response)
async def index(
    request: Request,
    svc: SvcDep,
    lang: LangQuery = "zh",
    park: Annotated[str | None, Query(description="open this park")] = None,
    key: Annotated[str | None, Query(description="a viewer key for this browser")] = None,
) -> Response:
    """One park: straight to its page. Several: a picker. The registry is not secret, but the
    page itself shows only names; numbers come from the API (which checks the key).
    `/?park=<id>&key=<viewer key>` is the display link (same as `/kiosk`)."""
    if park is not None:
        if key:
            return await _sign_in(request, svc, park, key, lang, display=True)
        park_or_404(svc, park)
        return RedirectResponse(_page_url(park, lang, False), status_code=307)
    parks = svc.registry.parks
    if len(parks) == 1:
        return RedirectResponse(f"/parks/{parks[0].id}?lang={lang}", status_code=307)
    items = "\n".join(
        f'<li><a href="/parks/{html.escape(p.id)}?lang={lang}">{html.escape(p.name or p.id)}'
        f" <small>({html.escape(p.id)})</small></a></li>"
        for p in parks
    )
    body = _template("index.html").substitute(
        lang=lang, title=html.escape(_PICKER_TITLE[lang]), items=items
    )
    return HTMLResponse(body)


@router.get("/parks/{park}", response_class=Response)
async def park_page(
    request: Request,
    park: str,
    svc: SvcDep,
    lang: LangQuery = "zh",
    display: Annotated[bool, Query(description="read-only wall-screen layout")] = False,
    key: Annotated[str | None, Query(description="a viewer key for this browser")] = None,
) -> Response:
    if key:  # an older bookmark with the key in it: sign in, then the address without it
        return await _sign_in(request, svc, park, key, lang, display)
    p = park_or_404(svc, park)
    body = _template("park.html").substitute(
        lang=lang,
        park=html.escape(p.id, quote=True),
        park_name=html.escape(p.name or p.id),
        display="1" if display else "0",
        body_class="display" if display else "",
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-cache"})


@router.get("/static/{path:path}")
async def static(path: str) -> FileResponse:
    """Files bundled in the package (no CDN: the page works offline)."""
    target = (STATIC_DIR / path).resolve()
    if not target.is_relative_to(STATIC_DIR) or not target.is_file():
        raise HTTPException(404, "not found")
    media_type, _ = mimetypes.guess_type(target.name)
    if target.suffix == ".js":
        media_type = "text/javascript"
    return FileResponse(
        target,
        media_type=media_type or "application/octet-stream",
        headers={"Cache-Control": "public, max-age=3600"},
    )
