"""`GET /api/v1/parks/{park}/quality`: per device and period, what the numbers rest on."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, HTTPException, Query

from app.accounting.buckets import EVERY_VALUES, Every, bucket_edges, to_ns
from app.auth.deps import Viewer
from app.http.openapi import INVALID, NEEDS_KEY, NOT_FOUND, RANGE_TOO_LARGE, STORAGE
from app.http.services import SvcDep, park_or_404
from app.http.times import ns_to_rfc3339, parse_range
from app.quality.report import QualityAccumulator, QualityCounts, QualityReport
from app.registry.models import Park
from app.storage.base import Storage

router = APIRouter(
    prefix="/api/v1/parks/{park}",
    tags=["quality"],
    responses={**NEEDS_KEY, **NOT_FOUND, **INVALID, **RANGE_TOO_LARGE, **STORAGE},
)

#: Interval energies per storage query (all devices of the park together): bounded memory
#: and response time whatever the window.
INTERVALS_PER_QUERY = 50_000
DEADLETTER_PAGE = 10_000
#: Beyond this many dead letters in one window the counts are reported as a lower bound.
MAX_DEADLETTERS = 1_000_000


async def _feed_intervals(storage: Storage, park: Park, acc: QualityAccumulator) -> None:
    starts = acc.expected_starts
    per_query = max(1, INTERVALS_PER_QUERY // max(1, len(park.devices)))
    lo = acc.start_ns
    k = 0
    while lo < acc.end_ns:
        k += per_query
        hi = starts[k] if k < len(starts) else acc.end_ns
        acc.add_intervals(lo, hi, await storage.intervals(park.id, lo, hi))
        lo = hi


async def _feed_deadletters(storage: Storage, park: Park, acc: QualityAccumulator) -> None:
    # Paged by receive time. A full page's last timestamp is re-read with the next page (its
    # letters are counted there), so ties at a page edge are neither lost nor counted twice
    # whatever order the store returns equal timestamps in.
    cursor = acc.start_ns
    counted = 0
    while True:
        page = await storage.deadletters(park.id, cursor, acc.end_ns, DEADLETTER_PAGE)
        if len(page) < DEADLETTER_PAGE:
            acc.add_deadletters(page)
            return
        last = page[-1].received_ns
        if page[0].received_ns == last:  # a whole page in one nanosecond: count and move on
            acc.add_deadletters(page)
            acc.rejections_truncated = True
            cursor = last + 1
            counted += len(page)
        else:
            done = [d for d in page if d.received_ns < last]
            acc.add_deadletters(done)
            counted += len(done)
            cursor = last
        if counted >= MAX_DEADLETTERS:
            acc.rejections_truncated = True
            return


def _counts_doc(c: QualityCounts) -> dict[str, Any]:
    return c.as_dict()


def report_doc(r: QualityReport, park: Park, every: str | None) -> dict[str, Any]:
    tz = park.tz
    devices = []
    for d in r.devices:
        doc: dict[str, Any] = {"device": d.device, "role": d.role, **_counts_doc(d.total)}
        doc["missing_ranges"] = [
            {"start": ns_to_rfc3339(s, tz), "end": ns_to_rfc3339(e, tz), "intervals": n}
            for s, e, n in d.missing_ranges
        ]
        doc["missing_ranges_truncated"] = d.missing_ranges_truncated
        if every is not None:
            doc["periods"] = [
                {"start": ns_to_rfc3339(s, tz), "end": ns_to_rfc3339(e, tz), **_counts_doc(c)}
                for (s, e), c in zip(r.periods, d.periods, strict=True)
            ]
        devices.append(doc)
    return {
        "park": r.park,
        "start": ns_to_rfc3339(r.start_ns, tz),
        "end": ns_to_rfc3339(r.end_ns, tz),
        "every": every,
        "interval_minutes": park.interval_minutes,
        "devices": devices,
        "total": _counts_doc(r.total),
        "unattributed_rejections": {
            "rejected_readings": r.unattributed.rejected_readings,
            "rejected_by_reason": dict(sorted(r.unattributed.rejected_by_reason.items())),
        },
        "unregistered_devices": r.unregistered_devices,
        "rejections_truncated": r.rejections_truncated,
    }


@router.get(
    "/quality",
    summary="Measured / estimated / missing intervals, resets, flags and rejections per device",
)
async def quality(
    *,
    park: str,
    start: str = Query(description="RFC 3339 with offset, inclusive"),
    end: str = Query(description="RFC 3339 with offset, exclusive"),
    every: str | None = Query(
        None, description="also split per period: 15m, 1h, 1d or 1mo (park local time)"
    ),
    svc: SvcDep,
    _: Viewer,
) -> dict[str, Any]:
    p = park_or_404(svc, park)
    s, e = parse_range(start, end, max_span=svc.settings.max_readings_span)
    periods: list[tuple[int, int]] | None = None
    if every is not None:
        if every not in EVERY_VALUES:
            raise HTTPException(
                422, f"every must be one of {', '.join(EVERY_VALUES)}, not {every!r}"
            )
        edges = bucket_edges(s, e, cast(Every, every), p.tz)
        if len(edges) > svc.settings.max_buckets:
            raise HTTPException(
                422,
                f"too many periods ({len(edges)} of {every}); the limit is "
                f"{svc.settings.max_buckets}: use a coarser every or a shorter range",
            )
        periods = [(to_ns(lo), to_ns(hi)) for lo, hi in edges]
    acc = QualityAccumulator(p, to_ns(s), to_ns(e), periods)
    await _feed_intervals(svc.storage, p, acc)
    await _feed_deadletters(svc.storage, p, acc)
    return report_doc(acc.report(), p, every)
