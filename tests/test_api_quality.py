"""`GET /api/v1/parks/{park}/quality` on real influxd, with hand-made intervals and dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import app.quality.routes as quality_routes
from app.accounting.buckets import to_ns
from app.intervals.models import IntervalEnergy
from app.quality.report import build_report
from app.storage.base import WriteBatch
from app.telemetry.models import DeadLetter, RejectReason
from tests.api_support import Api, make_api
from tests.fixtures.influx import InfluxServer

MIN = 60_000_000_000
HOUR = 60 * MIN
# park "demo": Asia/Shanghai, 60-min intervals, devices grid-main, pv-1, bldg-a
T8 = to_ns(datetime.fromisoformat("2026-06-01T08:00:00+08:00"))
WINDOW = {"start": "2026-06-01T08:00:00+08:00", "end": "2026-06-01T14:00:00+08:00"}


def h(hour: float) -> int:
    """ns of 2026-06-01 <hour>:00 +08:00."""
    return T8 + int((hour - 8) * HOUR)


def iv(
    device: str, hour: float, *, estimated: bool = False, flags: tuple[str, ...] = ()
) -> IntervalEnergy:
    role = {"grid-main": "grid", "pv-1": "pv", "bldg-a": "load", "ghost": "load"}[device]
    return IntervalEnergy(
        "demo", device, role, h(hour), h(hour) + HOUR, {"energy_import_kwh": 5.0}, estimated, flags
    )


def dl(ns: int, device: str | None, reason: RejectReason, park: str = "demo") -> DeadLetter:
    return DeadLetter(ns, f"lingtan/v1/{park}/{device}/telemetry", park, device, reason, "x", b"{")


INTERVALS = [
    iv("grid-main", 7),  # before the window
    iv("grid-main", 8),
    iv("grid-main", 8.5),  # not on the hourly grid: unaligned
    iv("grid-main", 9, flags=("conflict", "glitch")),
    iv("grid-main", 10, estimated=True, flags=("gap",)),
    iv("grid-main", 11, estimated=True, flags=("gap",)),
    # 12:00 missing
    iv("grid-main", 13, flags=("reset",)),
    iv("grid-main", 14),  # after the window
    iv("pv-1", 8, flags=("implausible",)),
    iv("pv-1", 9, flags=("counter_decrease", "reset")),
    # pv-1 10:00-14:00 missing; bldg-a has nothing
    iv("ghost", 9),  # not in the registry
]
DEADLETTERS = [
    dl(h(9) + 10 * MIN, "grid-main", RejectReason.INVALID_JSON),
    dl(h(9) + 20 * MIN, "grid-main", RejectReason.NON_FINITE),
    dl(h(12), "pv-1", RejectReason.OUT_OF_RANGE),
    dl(h(10), "nope", RejectReason.UNKNOWN_DEVICE),
    dl(h(7) + 59 * MIN, "grid-main", RejectReason.INVALID_JSON),  # before the window
    dl(h(14), "grid-main", RejectReason.INVALID_JSON),  # end is exclusive
    dl(h(9), "grid-b", RejectReason.INVALID_JSON, park="berlin"),  # another park
]


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in make_api(fresh_influx_db.url, fresh_influx_db.database, sqlite_url, tmp_path):
        yield a


async def quality(api: Api, **params: str) -> dict[str, Any]:
    r = await api.get("/api/v1/parks/demo/quality", params={**WINDOW, **params})
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def test_quality_per_device(api: Api) -> None:
    await api.storage.write(WriteBatch(intervals=INTERVALS, deadletters=DEADLETTERS))
    doc = await quality(api)
    assert doc["park"] == "demo" and doc["every"] is None and doc["interval_minutes"] == 60
    assert doc["start"] == "2026-06-01T08:00:00+08:00"
    assert doc["end"] == "2026-06-01T14:00:00+08:00"
    dev = {d["device"]: d for d in doc["devices"]}
    assert list(dev) == ["grid-main", "pv-1", "bldg-a"]

    g = dev["grid-main"]
    assert g["role"] == "grid"
    # 6 hours expected: 08, 09, 13 measured; 10, 11 estimated (gap); 12 missing
    assert (g["expected_intervals"], g["measured_intervals"], g["estimated_intervals"]) == (6, 3, 2)
    assert g["missing_intervals"] == 1 and g["unaligned_intervals"] == 1
    assert g["completeness"] == pytest.approx(5 / 6)
    assert g["measured_share"] == pytest.approx(3 / 6)
    assert (g["resets"], g["gaps"], g["implausible"], g["counter_decreases"]) == (1, 2, 0, 0)
    assert (g["glitches"], g["suspect"], g["conflicts"]) == (1, 0, 1)
    assert g["rejected_readings"] == 2
    assert g["rejected_by_reason"] == {"invalid_json": 1, "non_finite": 1}
    assert g["missing_ranges"] == [
        {"start": "2026-06-01T12:00:00+08:00", "end": "2026-06-01T13:00:00+08:00", "intervals": 1}
    ]
    assert "periods" not in g

    p = dev["pv-1"]
    assert (p["measured_intervals"], p["estimated_intervals"], p["missing_intervals"]) == (2, 0, 4)
    assert (p["resets"], p["implausible"], p["counter_decreases"], p["gaps"]) == (1, 1, 1, 0)
    assert p["rejected_by_reason"] == {"out_of_range": 1}
    assert p["missing_ranges"] == [
        {"start": "2026-06-01T10:00:00+08:00", "end": "2026-06-01T14:00:00+08:00", "intervals": 4}
    ]

    b = dev["bldg-a"]
    assert (b["measured_intervals"], b["missing_intervals"], b["completeness"]) == (0, 6, 0.0)
    assert b["missing_ranges"] == [
        {"start": "2026-06-01T08:00:00+08:00", "end": "2026-06-01T14:00:00+08:00", "intervals": 6}
    ]
    assert b["rejected_readings"] == 0

    t = doc["total"]
    assert (t["expected_intervals"], t["measured_intervals"], t["estimated_intervals"]) == (
        18,
        5,
        2,
    )
    assert (t["missing_intervals"], t["unaligned_intervals"]) == (11, 1)
    assert t["completeness"] == pytest.approx(7 / 18)
    assert (t["resets"], t["implausible"], t["counter_decreases"], t["gaps"]) == (2, 1, 1, 2)
    assert (t["glitches"], t["suspect"], t["conflicts"]) == (1, 0, 1)
    # 2 grid-main + 1 pv-1 + 1 for a device the registry does not know
    assert t["rejected_readings"] == 4
    assert doc["unattributed_rejections"] == {
        "rejected_readings": 1,
        "rejected_by_reason": {"unknown_device": 1},
    }
    assert doc["unregistered_devices"] == ["ghost"]
    assert doc["rejections_truncated"] is False


async def test_quality_periods(api: Api) -> None:
    await api.storage.write(WriteBatch(intervals=INTERVALS, deadletters=DEADLETTERS))
    doc = await quality(api, every="1h")
    assert doc["every"] == "1h"
    g = {d["device"]: d for d in doc["devices"]}["grid-main"]
    periods = g["periods"]
    assert [p["start"][11:16] for p in periods] == [
        "08:00",
        "09:00",
        "10:00",
        "11:00",
        "12:00",
        "13:00",
    ]
    assert [p["expected_intervals"] for p in periods] == [1] * 6
    assert [p["measured_intervals"] for p in periods] == [1, 1, 0, 0, 0, 1]
    assert [p["estimated_intervals"] for p in periods] == [0, 0, 1, 1, 0, 0]
    assert [p["missing_intervals"] for p in periods] == [0, 0, 0, 0, 1, 0]
    assert [p["unaligned_intervals"] for p in periods] == [1, 0, 0, 0, 0, 0]
    assert [p["resets"] for p in periods] == [0, 0, 0, 0, 0, 1]
    assert [p["rejected_readings"] for p in periods] == [0, 2, 0, 0, 0, 0]

    # a daily period clipped to the window holds exactly the totals
    day = await quality(api, every="1d")
    for d in day["devices"]:
        (only,) = d["periods"]
        assert (only["start"], only["end"]) == (WINDOW["start"], WINDOW["end"])
        assert {k: only[k] for k in only if k not in ("start", "end")} == {
            k: d[k]
            for k in d
            if k not in ("device", "role", "periods", "missing_ranges", "missing_ranges_truncated")
        }


async def test_window_not_on_the_grid(api: Api) -> None:
    await api.storage.write(WriteBatch(intervals=INTERVALS))
    # [08:30, 10:30): intervals *starting* inside are expected: 09:00 and 10:00
    doc = await quality(api, start="2026-06-01T08:30:00+08:00", end="2026-06-01T10:30:00+08:00")
    g = {d["device"]: d for d in doc["devices"]}["grid-main"]
    assert g["expected_intervals"] == 2
    assert (g["measured_intervals"], g["estimated_intervals"], g["missing_intervals"]) == (1, 1, 0)
    assert g["unaligned_intervals"] == 1  # the 08:30 one starts inside this window


async def test_deadletter_paging_keeps_ties(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # pages of 3 with equal timestamps across page edges: nothing lost, nothing twice
    t = h(9)
    a, b = RejectReason.INVALID_JSON, RejectReason.NON_FINITE
    letters = [
        dl(t, "grid-main", a),
        dl(t + 1, "grid-main", a),
        dl(t + 1, "grid-main", b),
        dl(t + 2, "grid-main", a),
        dl(t + 2, "grid-main", b),
        dl(t + 3, "pv-1", a),
    ]
    await api.storage.write(WriteBatch(deadletters=letters))
    monkeypatch.setattr(quality_routes, "DEADLETTER_PAGE", 3)
    doc = await quality(api)
    dev = {d["device"]: d for d in doc["devices"]}
    assert dev["grid-main"]["rejected_by_reason"] == {"invalid_json": 3, "non_finite": 2}
    assert dev["pv-1"]["rejected_readings"] == 1
    assert doc["total"]["rejected_readings"] == 6 and doc["rejections_truncated"] is False


async def test_interval_queries_in_windows(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # 3 devices and 4 intervals per query → windows of one interval each; same answer
    await api.storage.write(WriteBatch(intervals=INTERVALS))
    monkeypatch.setattr(quality_routes, "INTERVALS_PER_QUERY", 4)
    doc = await quality(api)
    g = {d["device"]: d for d in doc["devices"]}["grid-main"]
    assert (g["measured_intervals"], g["estimated_intervals"], g["missing_intervals"]) == (3, 2, 1)
    assert g["unaligned_intervals"] == 1
    p = {d["device"]: d for d in doc["devices"]}["pv-1"]
    assert p["missing_ranges"] == [
        {"start": "2026-06-01T10:00:00+08:00", "end": "2026-06-01T14:00:00+08:00", "intervals": 4}
    ]


async def test_quality_errors(api: Api) -> None:
    url = "/api/v1/parks/demo/quality"
    assert (await api.get("/api/v1/parks/nope/quality", params=WINDOW)).status_code == 404
    r = await api.get(url, params={"start": WINDOW["end"], "end": WINDOW["start"]})
    assert r.status_code == 422 and "before" in r.json()["detail"]
    r = await api.get(url, params={"start": "2026-06-01T08:00:00", "end": WINDOW["end"]})
    assert r.status_code == 422 and "offset" in r.json()["detail"]
    r = await api.get(url, params={**WINDOW, "every": "2h"})
    assert r.status_code == 422 and "every" in r.json()["detail"]
    r = await api.get(url, params={"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"})
    assert r.status_code == 400
    assert (await api.get(url)).status_code == 422  # start/end required
    assert (await api.client.get(url, params=WINDOW)).status_code == 401


def test_missing_ranges_capped() -> None:
    # pure: every other interval missing → 3 runs, only the first 2 listed, counts exact
    from app.quality.report import QualityAccumulator
    from tests.api_support import registry

    park = registry().park("demo")
    assert park is not None
    acc = QualityAccumulator(park, h(8), h(14), max_missing_ranges=2)
    acc.add_intervals(h(8), h(14), [iv("grid-main", k) for k in (8, 10, 12)])
    g = acc.report().devices[0]
    assert g.total.missing_intervals == 3
    assert [(s, e, n) for s, e, n in g.missing_ranges] == [(h(9), h(10), 1), (h(11), h(12), 1)]
    assert g.missing_ranges_truncated is True

    # and build_report agrees with the accumulator fed in one go
    rep = build_report(park, h(8), h(14), INTERVALS, DEADLETTERS)
    assert rep.total.missing_intervals == 11 and rep.total.rejected_readings == 4


def test_storage_intervals_without_soc_are_counted() -> None:
    from app.quality.report import QualityCounts

    q = QualityCounts()
    q.count_interval(IntervalEnergy("p", "b", "storage", 0, HOUR, {"energy_charge_kwh": 1.0}))
    q.count_interval(
        IntervalEnergy(
            "p", "b", "storage", HOUR, 2 * HOUR, {"energy_charge_kwh": 1.0, "soc_pct": 5}
        )
    )
    q.count_interval(IntervalEnergy("p", "g", "grid", 0, HOUR, {"energy_import_kwh": 1.0}))
    assert q.storage_without_soc == 1
    assert q.as_dict()["storage_without_soc"] == 1
