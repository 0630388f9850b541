"""`GET /api/v1/parks/{park}/balance`: energy, green shares and emissions per bucket and total."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from app.auth.deps import Viewer
from app.balance.service import BalanceRequestError
from app.http.services import SvcDep, park_or_404
from app.http.times import parse_range

router = APIRouter(prefix="/api/v1/parks/{park}", tags=["balance"])


@router.get("/balance", summary="Balance per bucket and total over [start, end)")
async def balance(
    *,
    park: str,
    start: str = Query(description="RFC 3339 with offset, inclusive"),
    end: str = Query(description="RFC 3339 with offset, exclusive"),
    every: str = Query("1d", description="bucket: 15m, 1h, 1d or 1mo (park local time)"),
    svc: SvcDep,
    _: Viewer,
) -> dict[str, Any]:
    p = park_or_404(svc, park)
    s, e = parse_range(start, end, max_span=svc.options.max_balance_span)
    try:
        result = await svc.balance.balance(p, s, e, every)
    except BalanceRequestError as exc:
        raise HTTPException(422, str(exc)) from None
    doc = result.as_dict()
    doc["interval_minutes"] = p.interval_minutes
    return doc
