"""`GET /api/v1/parks/{park}/evaluation?year=`: the zero-carbon park report as JSON, XLSX or PDF."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.accounting import get_factor_set
from app.auth.deps import Viewer
from app.balance.service import BalanceRequestError
from app.evaluation.pdf import render_pdf
from app.evaluation.report import DEFAULT_CONFIG, EvaluationConfig, build_report
from app.evaluation.xlsx import render_xlsx
from app.http.openapi import INVALID, NEEDS_KEY, NOT_FOUND, PDF, STORAGE, XLSX, served_as
from app.http.services import SvcDep, park_or_404

router = APIRouter(
    prefix="/api/v1/parks/{park}",
    tags=["evaluation"],
    responses={**NEEDS_KEY, **NOT_FOUND, **INVALID, **STORAGE},
)

MIN_YEAR = 2000


def _format(fmt: str | None, accept: str) -> str:
    if fmt is not None:
        return fmt
    accept = accept.lower()
    if XLSX in accept:
        return "xlsx"
    if PDF in accept:
        return "pdf"
    return "json"


def _config(request: Request) -> EvaluationConfig:
    # The composition root may set `app.state.evaluation_config`; otherwise the documented
    # defaults (docs/evaluation.md).
    cfg = getattr(request.app.state, "evaluation_config", None)
    return cfg if isinstance(cfg, EvaluationConfig) else DEFAULT_CONFIG


@router.get(
    "/evaluation",
    summary="Zero-carbon park evaluation report for a year (JSON, XLSX or PDF)",
    response_model=None,
    responses=served_as(XLSX, PDF),
)
async def evaluation(
    *,
    request: Request,
    park: str,
    year: int | None = Query(None, description="calendar year (park local); default this year"),
    format: str | None = Query(None, pattern="^(json|xlsx|pdf)$", description="json|xlsx|pdf"),
    lang: str = Query("zh", pattern="^(zh|en)$", description="language of XLSX/PDF: zh|en"),
    svc: SvcDep,
    _: Viewer,
) -> dict[str, Any] | Response:
    p = park_or_404(svc, park)
    now = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=svc.balance.clock() // 1000)
    now = now.astimezone(p.tz)
    if year is None:
        year = now.year
    if year < MIN_YEAR or year > now.year:
        raise HTTPException(
            422, f"year must be between {MIN_YEAR} and {now.year} (park local), not {year}"
        )
    year_start = datetime(year, 1, 1, tzinfo=p.tz)
    year_end = datetime(year + 1, 1, 1, tzinfo=p.tz)
    window_end = min(year_end, now)
    if window_end <= year_start:
        raise HTTPException(422, f"year {year} has not started in the park's time zone")
    try:
        fs = get_factor_set(p.factor_set, svc.balance.factor_sets)
    except ValueError as exc:  # a park configured with a set nobody defined
        raise HTTPException(422, f"park {p.id!r}: {exc}") from None
    try:
        result = await svc.balance.balance(p, year_start, window_end, "1mo")
    except BalanceRequestError as exc:
        raise HTTPException(422, str(exc)) from None
    registry_version = svc.registry_holder.version
    head = await run_in_threadpool(svc.ledgers.audit_head)
    doc = await run_in_threadpool(
        build_report,
        result,
        p,
        fs,
        year=year,
        year_start=year_start,
        year_end=year_end,
        config=_config(request),
        registry_version=registry_version,
        audit_head=head,
    )
    fmt = _format(format, request.headers.get("accept", ""))
    if fmt == "json":
        return doc.model_dump(mode="json")
    name = f"evaluation-{p.id}-{year}-{lang}.{fmt}"
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Report-Hash": doc.hash,
    }
    if fmt == "xlsx":
        body = await run_in_threadpool(render_xlsx, doc, lang)
        return Response(body, media_type=XLSX, headers=headers)
    body = await run_in_threadpool(render_pdf, doc, lang)
    return Response(body, media_type=PDF, headers=headers)
