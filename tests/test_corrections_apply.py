"""`apply_corrections`: set/add spread over aligned intervals, missing slots, order, purity."""

from __future__ import annotations

from datetime import datetime

import pytest

from app.accounting.buckets import to_ns
from app.corrections import CORRECTED_FLAG, Correction, apply_corrections, check_correction
from app.intervals.models import IntervalEnergy
from app.registry import parse_registry
from app.registry.models import Park

YAML = """
parks:
  - id: p
    timezone: Asia/Shanghai
    grid_region: northeast
    interval_minutes: 15
    devices:
      - {id: grid, role: grid}
      - {id: pv, role: pv}
"""
Q_NS = 15 * 60 * 1_000_000_000


def park() -> Park:
    p = parse_registry(YAML).park("p")
    assert p is not None
    return p


T0 = to_ns(datetime.fromisoformat("2026-06-01T08:00:00+08:00"))


def row(device: str, k: int, **values: float) -> IntervalEnergy:
    role = "grid" if device == "grid" else "pv"
    s = T0 + k * Q_NS
    return IntervalEnergy("p", device, role, s, s + Q_NS, dict(values))


def corr(cid: str, kind: str, amount: float, k0: int, k1: int, seq: int, **kw: str) -> Correction:
    return Correction(
        id=cid,
        park="p",
        device=kw.get("device", "grid"),
        quantity=kw.get("quantity", "energy_import_kwh"),
        start_ns=T0 + k0 * Q_NS,
        end_ns=T0 + k1 * Q_NS,
        kind=kind,  # type: ignore[arg-type]
        amount=amount,
        seq=seq,
    )


def grid_import(rows: list[IntervalEnergy]) -> list[float]:
    return [r.values.get("energy_import_kwh", 0.0) for r in rows if r.device == "grid"]


def hour() -> list[IntervalEnergy]:
    # 08:00–09:00: grid imports 10, 20, 30, 40; pv 5 each quarter
    return [
        row("grid", k, energy_import_kwh=10.0 * (k + 1), energy_export_kwh=1.0) for k in range(4)
    ] + [row("pv", k, energy_kwh=5.0) for k in range(4)]


def test_add_spreads_evenly_and_keeps_other_values() -> None:
    out = apply_corrections(hour(), [corr("c1", "add", 40.0, 0, 4, 1)], park())
    # 40 kWh over four quarters = +10 each: 20, 30, 40, 50
    assert grid_import(out) == pytest.approx([20.0, 30.0, 40.0, 50.0])
    grid = [r for r in out if r.device == "grid"]
    assert all(r.values["energy_export_kwh"] == 1.0 for r in grid)
    assert all(CORRECTED_FLAG in r.flags for r in grid)
    pv = [r for r in out if r.device == "pv"]
    assert [r.values["energy_kwh"] for r in pv] == [5.0] * 4
    assert all(CORRECTED_FLAG not in r.flags for r in pv)


def test_set_replaces_the_window_total() -> None:
    # set 08:15–08:45 to 100 → 50 and 50 there; 10 and 40 outside untouched
    out = apply_corrections(hour(), [corr("c1", "set", 100.0, 1, 3, 1)], park())
    assert grid_import(out) == pytest.approx([10.0, 50.0, 50.0, 40.0])
    flagged = [CORRECTED_FLAG in r.flags for r in out if r.device == "grid"]
    assert flagged == [False, True, True, False]


def test_missing_interval_gets_a_new_estimated_row() -> None:
    rows = [r for r in hour() if not (r.device == "grid" and r.start_ns == T0 + 2 * Q_NS)]
    out = apply_corrections(rows, [corr("c1", "add", 40.0, 0, 4, 1)], park())
    # 08:30 was missing: it gets 10 (0 + 10); the others 20, 30, 50
    assert grid_import(out) == pytest.approx([20.0, 30.0, 10.0, 50.0])
    new = [r for r in out if r.device == "grid" and r.start_ns == T0 + 2 * Q_NS]
    assert len(new) == 1
    assert new[0].estimated and new[0].role == "grid" and new[0].end_ns == T0 + 3 * Q_NS
    assert new[0].flags == (CORRECTED_FLAG,)
    # the set of a missing slot works the same way
    out = apply_corrections(rows, [corr("c2", "set", 8.0, 2, 3, 1)], park())
    assert grid_import(out) == pytest.approx([10.0, 20.0, 8.0, 40.0])


def test_overlapping_corrections_apply_in_creation_order() -> None:
    add = corr("a", "add", 40.0, 0, 4, 1)  # +10 per quarter
    setc = corr("b", "set", 4.0, 0, 2, 2)  # 2 per quarter for 08:00–08:30
    # add then set: 2, 2, 40, 50
    out = apply_corrections(hour(), [setc, add], park())  # given out of order: seq decides
    assert grid_import(out) == pytest.approx([2.0, 2.0, 40.0, 50.0])
    # set then add: 2 + 10, 2 + 10, 40, 50
    out = apply_corrections(
        hour(), [corr("a", "add", 40.0, 0, 4, 2), corr("b", "set", 4.0, 0, 2, 1)], park()
    )
    assert grid_import(out) == pytest.approx([12.0, 12.0, 40.0, 50.0])


def test_negative_add_is_clamped_at_zero() -> None:
    # −100 over 08:00–08:30 is −50 each: 10 → 0 (clamped), 20 → 0 (clamped)
    out = apply_corrections(hour(), [corr("c", "add", -100.0, 0, 2, 1)], park())
    assert grid_import(out) == pytest.approx([0.0, 0.0, 30.0, 40.0])


def test_inputs_are_not_modified_and_other_parks_pass() -> None:
    rows = hour()
    before = [dict(r.values) for r in rows]
    other = Correction("x", "q", "grid", "energy_import_kwh", T0, T0 + Q_NS, "add", 99.0, 1)
    out = apply_corrections(rows, [other], park())
    assert out == rows
    apply_corrections(rows, [corr("c", "set", 0.0, 0, 4, 1)], park())
    assert [dict(r.values) for r in rows] == before


def test_check_correction() -> None:
    p = park()
    assert check_correction(p, "grid", "energy_import_kwh", T0, T0 + Q_NS) is None
    assert check_correction(p, "grid", "energy_import_kwh", T0 + 60_000_000_000, T0 + Q_NS)
    assert check_correction(p, "grid", "energy_import_kwh", T0, T0 + Q_NS + 1)
    assert check_correction(p, "grid", "energy_import_kwh", T0 + Q_NS, T0)
    assert check_correction(p, "nope", "energy_import_kwh", T0, T0 + Q_NS)
    assert check_correction(p, "grid", "power_kw", T0, T0 + Q_NS)
