"""`/readings` (JSON, CSV or XLSX, read window by window) and `/api/v1/deadletters`."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.auth.deps import Viewer
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
from app.http.times import ns_to_rfc3339, parse_range, parse_time, to_ns
from app.ledgers import ApiRole
from app.registry.models import COUNTER_QUANTITIES, INSTANT_QUANTITIES, Park
from app.telemetry.models import DeadLetter, Reading

router = APIRouter(tags=["telemetry"], responses={**NEEDS_KEY, **INVALID, **STORAGE})

_NS_PER_S = 1_000_000_000
#: fixed CSV value columns (streamed, so the header cannot depend on the data); anything
#: else a gateway sent goes, losslessly, into the `extra` JSON column
CSV_QUANTITIES: tuple[str, ...] = tuple(sorted(COUNTER_QUANTITIES)) + tuple(
    sorted(INSTANT_QUANTITIES)
)
CSV_HEADER: tuple[str, ...] = ("time", "device", "ts_source", "reset", *CSV_QUANTITIES, "extra")


def reading_doc(r: Reading, park: Park) -> dict[str, Any]:
    return {
        "device": r.device,
        "time": ns_to_rfc3339(r.ts_ns, park.tz),
        "ts_ns": r.ts_ns,
        "values": r.values,
        "reset": r.reset,
        "ts_source": r.ts_source,
    }


def _csv_row(r: Reading, park: Park) -> list[str]:
    extra = {k: v for k, v in r.values.items() if k not in _CSV_SET}
    return [
        ns_to_rfc3339(r.ts_ns, park.tz),
        r.device,
        r.ts_source,
        "true" if r.reset else "false",
        *(repr(r.values[q]) if q in r.values else "" for q in CSV_QUANTITIES),
        json.dumps(extra, sort_keys=True) if extra else "",
    ]


_CSV_SET = frozenset(CSV_QUANTITIES)


def _xlsx_row(r: Reading, park: Park) -> list[Any]:
    extra = {k: v for k, v in r.values.items() if k not in _CSV_SET}
    return [
        ns_to_rfc3339(r.ts_ns, park.tz),
        r.device,
        r.ts_source,
        r.reset,
        *(r.values.get(q) for q in CSV_QUANTITIES),
        json.dumps(extra, sort_keys=True) if extra else None,
    ]


#: rows per XLSX sheet (Excel's limit); a module attribute so tests can make it small
XLSX_SHEET_ROWS: int | None = None


async def _xlsx_response(
    chunks: AsyncIterator[list[Reading]], park: Park, filename: str
) -> StreamingResponse:
    book = SpooledXlsx("readings", CSV_HEADER, max_data_rows=XLSX_SHEET_ROWS)
    try:
        async for chunk in chunks:
            rows = [_xlsx_row(r, park) for r in chunk]
            await run_in_threadpool(book.append, rows)
        fh = await run_in_threadpool(book.finish)
    except BaseException:
        book.discard()
        raise
    return file_download(fh, filename, XLSX_MEDIA_TYPE)


@router.get(
    "/api/v1/parks/{park}/readings",
    summary="Raw readings as received; CSV (Accept: text/csv) or XLSX downloads",
    responses={**NOT_FOUND, **RANGE_TOO_LARGE, **served_as(CSV, XLSX)},
)
async def readings(
    *,
    park: str,
    request: Request,
    start: str = Query(description="RFC 3339 with offset, inclusive"),
    end: str = Query(description="RFC 3339 with offset, exclusive"),
    device: str | None = Query(None, description="one device; all when omitted"),
    format: str | None = Query(
        None, pattern="^(json|csv|xlsx)$", description="json|csv|xlsx; overrides Accept"
    ),
    svc: SvcDep,
    _: Viewer,
) -> StreamingResponse:
    p = park_or_404(svc, park)
    if device is not None and p.device(device) is None:
        raise HTTPException(404, f"unknown device {device!r} in park {park!r}")
    s, e = parse_range(start, end, max_span=svc.settings.max_readings_span)
    start_ns, end_ns = to_ns(s), to_ns(e)
    # One device's day, or the whole park's hour, per storage query: memory stays bounded
    # whatever the range, and the first bytes leave before the last window is read.
    window_ns = (86_400 if device is not None else 3_600) * _NS_PER_S
    storage = svc.storage

    async def windows() -> AsyncIterator[list[Reading]]:
        lo = start_ns
        while lo < end_ns:
            hi = min(end_ns, lo + window_ns)
            yield await storage.readings(p.id, lo, hi, device)
            lo = hi

    # The first window is read before the response starts, so an unreachable store is a 503,
    # not a truncated 200.
    gen = windows()
    first = await anext(gen)

    async def all_windows() -> AsyncIterator[list[Reading]]:
        yield first
        async for chunk in gen:
            yield chunk

    fmt = negotiate(request, format)
    stem = f"{p.id}-readings{'-' + device if device else ''}"
    if fmt == "xlsx":
        # The zip container is only complete at the end, so the workbook is built first
        # (rows streamed to disk, window by window), then the file is streamed back.
        return await _xlsx_response(all_windows(), p, f"{stem}.xlsx")

    if fmt == "csv":
        return StreamingResponse(
            _csv_body(all_windows(), p),
            media_type=CSV_MEDIA_TYPE,
            headers=attachment(f"{stem}.csv"),
        )
    return StreamingResponse(_json_body(all_windows(), p), media_type="application/json")


async def _csv_body(chunks: AsyncIterator[list[Reading]], park: Park) -> AsyncIterator[bytes]:
    """The readings as CSV, one piece per storage window."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    async for chunk in chunks:
        for r in chunk:
            writer.writerow(_csv_row(r, park))
        yield buf.getvalue().encode("utf-8")
        buf.seek(0)
        buf.truncate()
    rest = buf.getvalue()
    if rest:
        yield rest.encode("utf-8")


async def _json_body(chunks: AsyncIterator[list[Reading]], park: Park) -> AsyncIterator[bytes]:
    """The readings as {"items": [...]}, one piece per storage window."""
    yield b'{"items":['
    first_item = True
    async for chunk in chunks:
        parts = []
        for r in chunk:
            parts.append(("" if first_item else ",") + json.dumps(reading_doc(r, park)))
            first_item = False
        if parts:
            yield "".join(parts).encode("utf-8")
    yield b"]}"


def deadletter_doc(d: DeadLetter, with_raw: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "received": ns_to_rfc3339(d.received_ns),
        "received_ns": d.received_ns,
        "topic": d.topic,
        "park": d.park,
        "device": d.device,
        "reason": d.reason.value,
        "detail": d.detail,
        "size_bytes": len(d.raw),
    }
    if with_raw:
        doc["raw_base64"] = base64.b64encode(d.raw).decode("ascii")
        doc["raw_preview"] = d.raw[:2000].decode("utf-8", errors="replace")
    return doc


@router.get(
    "/api/v1/deadletters",
    summary="Rejected payloads: topic, time, reason; raw bytes for auditors",
)
async def deadletters(
    *,
    park: str | None = Query(None),
    start: str | None = Query(None, description="RFC 3339 with offset, inclusive"),
    end: str | None = Query(None, description="RFC 3339 with offset, exclusive"),
    limit: int = Query(1000, ge=1, le=10_000),
    svc: SvcDep,
    who: Viewer,
) -> dict[str, Any]:
    if park is not None and ("\x00" in park or "\r" in park):
        # InfluxQL cannot carry either in a string literal (influxd answered 400, we a 502;
        # found by fuzzing); no MQTT topic holds a NUL, and a CR park is listed unfiltered
        raise HTTPException(422, "park must not contain NUL or carriage-return characters")
    s = parse_time(start, "start") if start is not None else None
    e = parse_time(end, "end") if end is not None else None
    if s is not None and e is not None and s >= e:
        raise HTTPException(422, "start must be before end")
    with_raw = who.key_id is not None and who.role.allows(ApiRole.AUDITOR)
    lo, hi = (to_ns(s) if s else None), (to_ns(e) if e else None)
    if who.parks is None:
        items = await svc.storage.deadletters(park, lo, hi, limit)
    elif park is not None:
        if park not in who.parks:
            raise HTTPException(403, f"this key is not scoped to park {park!r}")
        items = await svc.storage.deadletters(park, lo, hi, limit)
    else:
        # a key scoped to parks sees their dead letters only (never those of no park: an
        # unparsable topic may name anyone's); first `limit` in time order, as unscoped
        items = []
        for p in sorted(who.parks):
            items += await svc.storage.deadletters(p, lo, hi, limit)
        items = sorted(items, key=lambda d: d.received_ns)[:limit]
    return {
        "items": [deadletter_doc(d, with_raw) for d in items],
        "raw_included": with_raw,
    }
