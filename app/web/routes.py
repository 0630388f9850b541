"""HTTP routes of the built-in live page: park picker, the page, and offline static files."""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path
from string import Template
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from app.http.services import SvcDep, park_or_404

_HERE = Path(__file__).resolve().parent
STATIC_DIR = _HERE / "static"
_TEMPLATES = _HERE / "templates"

Lang = Literal["zh", "en"]
LangQuery = Annotated[Lang, Query(description="zh (default) or en")]

_PICKER_TITLE = {"zh": "灵碳 · 选择园区", "en": "Lingtan · choose a park"}

router = APIRouter(include_in_schema=False)


def _template(name: str) -> Template:
    return Template((_TEMPLATES / name).read_text(encoding="utf-8"))


@router.get("/", response_class=Response)
async def index(svc: SvcDep, lang: LangQuery = "zh") -> Response:
    """One park: straight to its page. Several: a picker. The registry is not secret, but the
    page itself shows only names; numbers come from the API (which checks the key)."""
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


@router.get("/parks/{park}", response_class=HTMLResponse)
async def park_page(park: str, svc: SvcDep, lang: LangQuery = "zh") -> HTMLResponse:
    p = park_or_404(svc, park)
    body = _template("park.html").substitute(
        lang=lang,
        park=html.escape(p.id, quote=True),
        park_name=html.escape(p.name or p.id),
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
