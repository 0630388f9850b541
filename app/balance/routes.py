"""`GET /api/v1/parks/{park}/balance`: energy, green shares and emissions per bucket and total."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.accounting.result import BALANCE_FIELDS, BalanceFields, BalanceResult
from app.auth.deps import Viewer
from app.balance.service import BalanceRequestError
from app.http.export import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
    SpooledXlsx,
    attachment,
    file_download,
    negotiate,
)
from app.http.openapi import (
    CSV,
    INVALID,
    NEEDS_KEY,
    NOT_FOUND,
    RANGE_TOO_LARGE,
    STORAGE,
    XLSX,
    served_as,
)
from app.http.services import SvcDep, park_or_404
from app.http.times import parse_range

router = APIRouter(
    prefix="/api/v1/parks/{park}",
    tags=["balance"],
    responses={**NEEDS_KEY, **NOT_FOUND, **INVALID, **RANGE_TOO_LARGE, **STORAGE},
)

#: export columns: `row` is `bucket` or `total` (the last row, spanning the whole window)
EXPORT_HEADER: tuple[str, ...] = ("row", "start", "end", *BALANCE_FIELDS)
_CSV_ROWS_PER_CHUNK = 500


def export_rows(result: BalanceResult) -> Iterator[list[Any]]:
    """One row per bucket, then the total; None (no meaningful share/ratio) stays None."""

    def values(f: BalanceFields) -> list[Any]:
        return [getattr(f, name) for name in BALANCE_FIELDS]

    for b in result.buckets:
        yield ["bucket", b.start.isoformat(), b.end.isoformat(), *values(b.fields)]
    yield ["total", result.start.isoformat(), result.end.isoformat(), *values(result.total)]


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else str(v)


def _csv_chunks(result: BalanceResult) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(EXPORT_HEADER)
    for n, row in enumerate(export_rows(result), start=1):
        writer.writerow([_csv_cell(v) for v in row])
        if n % _CSV_ROWS_PER_CHUNK == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def _xlsx_file(result: BalanceResult, interval_minutes: int) -> IO[bytes]:
    book = SpooledXlsx("balance", EXPORT_HEADER)
    try:
        book.append(export_rows(result))
        book.add_sheet(
            "about",
            [
                ["park", result.park],
                ["factor_set", result.factor_set],
                ["start", result.start.isoformat()],
                ["end", result.end.isoformat()],
                ["every", result.every],
                ["interval_minutes", interval_minutes],
                *(["warning", w] for w in result.warnings),
            ],
        )
        return book.finish()
    except BaseException:
        book.discard()
        raise


@router.get(
    "/balance",
    summary="Balance per bucket and total over [start, end); CSV or XLSX downloads",
    response_model=None,
    responses=served_as(CSV, XLSX),
)
async def balance(
    *,
    park: str,
    request: Request,
    start: str = Query(description="RFC 3339 with offset, inclusive"),
    end: str = Query(description="RFC 3339 with offset, exclusive"),
    every: str = Query("1d", description="bucket: 15m, 1h, 1d or 1mo (park local time)"),
    format: str | None = Query(
        None, pattern="^(json|csv|xlsx)$", description="json|csv|xlsx; overrides Accept"
    ),
    svc: SvcDep,
    _: Viewer,
) -> JSONResponse | StreamingResponse:
    p = park_or_404(svc, park)
    s, e = parse_range(start, end, max_span=svc.settings.max_balance_span)
    try:
        result = await svc.balance.balance(p, s, e, every)
    except BalanceRequestError as exc:
        raise HTTPException(422, str(exc)) from None
    fmt = negotiate(request, format)
    stem = f"{p.id}-balance-{every}-{s.astimezone(p.tz).date().isoformat()}"
    if fmt == "csv":
        return StreamingResponse(
            _csv_chunks(result), media_type=CSV_MEDIA_TYPE, headers=attachment(f"{stem}.csv")
        )
    if fmt == "xlsx":
        fh = await run_in_threadpool(_xlsx_file, result, p.interval_minutes)
        return file_download(fh, f"{stem}.xlsx", XLSX_MEDIA_TYPE)
    doc = result.as_dict()
    doc["interval_minutes"] = p.interval_minutes
    # JSON-native already: skip FastAPI's per-value encoder (a third of a warm year's time)
    return JSONResponse(doc)
