"""Certificate allocation: validity, ≤ imports, each MWh once, deterministic, window-independent."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.accounting import CN_2023, Certificate, allocate_certificates, compute_balance
from app.accounting.buckets import to_ns
from app.intervals.models import IntervalEnergy
from app.registry.models import Park

TZ = ZoneInfo("Asia/Shanghai")
RES = 0.6096
PARK = Park.model_validate(
    {
        "id": "p",
        "timezone": "Asia/Shanghai",
        "grid_region": "northeast",
        "interval_minutes": 60,
        "devices": [{"id": "g", "role": "grid"}],
    }
)


def imp(at: datetime, kwh: float) -> IntervalEnergy:
    s = to_ns(at)
    return IntervalEnergy(
        "p",
        "g",
        "grid",
        s,
        s + 3_600_000_000_000,
        {"energy_import_kwh": kwh, "energy_export_kwh": 0.0},
    )


def cert(cid: str, mwh: float, frm: datetime, to: datetime, park: str = "p") -> Certificate:
    return Certificate(cid, park, "gec", mwh, frm, to)


def test_certificates_exceeding_imports_cover_only_imports() -> None:
    day = datetime(2026, 6, 1, tzinfo=TZ)
    rows = [imp(day + timedelta(hours=9), 300.0), imp(day + timedelta(hours=15), 200.0)]
    c = cert("gec-1", 1.0, day, day + timedelta(days=30))  # 1000 kWh available
    r = compute_balance(PARK, rows, [c], [], CN_2023, day, day + timedelta(days=1), "1d")
    t = r.total
    assert t.certificates_applied_kwh == pytest.approx(500.0)  # never more than I
    assert t.scope2_market_kg == pytest.approx(0.0)
    assert t.green_market_kwh == pytest.approx(500.0)
    assert t.green_share_market == pytest.approx(1.0)
    assert t.green_share_physical == pytest.approx(0.0)
    assert r.certificates_used_kwh == {"gec-1": pytest.approx(500.0)}
    assert [(u.certificate_id, u.kwh) for u in r.certificate_trail] == [
        ("gec-1", 300.0),
        ("gec-1", 200.0),
    ]
    # the next day, 500 kWh are left: 800 imported → 500 covered, 300 × 0.6096 market
    rows2 = [*rows, imp(day + timedelta(days=1, hours=9), 800.0)]
    r2 = compute_balance(PARK, rows2, [c], [], CN_2023, day, day + timedelta(days=2), "1d")
    assert r2.buckets[1].fields.certificates_applied_kwh == pytest.approx(500.0)
    assert r2.buckets[1].fields.scope2_market_kg == pytest.approx(300.0 * RES)
    assert r2.total.certificates_applied_kwh == pytest.approx(1000.0)  # = 1 MWh, once


def test_certificate_spanning_two_months_is_window_independent() -> None:
    jan20 = datetime(2026, 1, 20, 10, tzinfo=TZ)
    feb10 = datetime(2026, 2, 10, 10, tzinfo=TZ)
    c = cert("gec-2", 2.0, datetime(2026, 1, 15, tzinfo=TZ), datetime(2026, 2, 15, tzinfo=TZ))
    rows = [imp(jan20, 1500.0), imp(feb10, 1000.0)]
    year = compute_balance(
        PARK,
        rows,
        [c],
        [],
        CN_2023,
        datetime(2026, 1, 1, tzinfo=TZ),
        datetime(2026, 3, 1, tzinfo=TZ),
        "1mo",
    )
    # Jan: 1500 covered; Feb: 2000 − 1500 = 500 covered, 500 × 0.6096 = 304.8 kg
    assert [b.fields.certificates_applied_kwh for b in year.buckets] == [1500.0, 500.0]
    assert year.buckets[1].fields.scope2_market_kg == pytest.approx(304.8)
    # Asking for February only, with the rows from valid_from on, gives the same answer.
    feb = compute_balance(
        PARK,
        rows,
        [c],
        [],
        CN_2023,
        datetime(2026, 2, 1, tzinfo=TZ),
        datetime(2026, 3, 1, tzinfo=TZ),
        "1mo",
    )
    assert feb.total.certificates_applied_kwh == pytest.approx(500.0)
    assert [u.kwh for u in feb.certificate_trail] == [500.0]
    assert feb.certificates_used_kwh["gec-2"] == pytest.approx(2000.0)
    # Without January's rows the caller must say what was used before.
    feb2 = compute_balance(
        PARK,
        rows[1:],
        [c],
        [],
        CN_2023,
        datetime(2026, 2, 1, tzinfo=TZ),
        datetime(2026, 3, 1, tzinfo=TZ),
        "1mo",
        certificates_used_before_kwh={"gec-2": 1500.0},
    )
    assert feb2.total.certificates_applied_kwh == pytest.approx(500.0)


def test_validity_order_and_other_parks() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=TZ)
    hour = 3_600_000_000_000
    s = to_ns(t0)
    imports = [(s + k * hour, s + (k + 1) * hour, 600.0) for k in range(3)]
    certs = [
        cert("late", 1.0, t0, t0 + timedelta(days=30)),
        cert("early-b", 0.5, t0, t0 + timedelta(days=10)),
        cert("early-a", 0.5, t0, t0 + timedelta(days=10)),
        cert("other-park", 100.0, t0, t0 + timedelta(days=10), park="q"),
        cert("not-yet", 100.0, t0 + timedelta(hours=2), t0 + timedelta(days=10)),
    ]
    a = allocate_certificates(imports, certs, "p")
    # Order: valid_to 10 days (early-a, early-b, not-yet by id), then late (30 days).
    # hour 0: early-a 500 + early-b 100; not-yet is not valid before hour 2.
    trail = [(u.certificate_id, (u.start_ns - s) // hour, u.kwh) for u in a.trail]
    assert trail == [
        ("early-a", 0, 500.0),
        ("early-b", 0, 100.0),  # hour 0: 600
        ("early-b", 1, 400.0),
        ("late", 1, 200.0),  # hour 1: not-yet not valid yet
        ("not-yet", 2, 600.0),  # hour 2: not-yet valid, valid_to earlier than late's
    ]
    assert a.used_kwh["late"] == 200.0 and "other-park" not in a.used_kwh
    assert all(v <= 600.0 for v in a.applied_kwh.values())


def test_expired_certificate_is_not_used() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=TZ)
    s = to_ns(t0)
    c = cert("old", 5.0, t0 - timedelta(days=30), t0)  # valid_to is exclusive
    a = allocate_certificates([(s, s + 3_600_000_000_000, 100.0)], [c], "p")
    assert a.trail == () and a.applied_kwh == {}
    # an interval straddling valid_to is not inside the validity period
    c2 = cert("half", 5.0, t0 - timedelta(days=30), t0 + timedelta(minutes=30))
    assert allocate_certificates([(s, s + 3_600_000_000_000, 100.0)], [c2], "p").trail == ()
