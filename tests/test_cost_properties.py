"""Property tests of cost (docs/cost.md): additive over any bucketing; flat = energy × price."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.accounting.buckets import to_ns
from tests.test_accounting_properties import run, scenario
from tests.test_cost import TARIFF

#: two revisions inside the property window (2026-10-24 .. 11-02, Berlin DST end, a new month)
WINDOW_TARIFF: dict[str, Any] = {
    **TARIFF,
    "holidays": ["2026-10-26"],
    "revisions": [
        {**TARIFF["revisions"][0], "valid_from": "2026-01-01"},
        {**TARIFF["revisions"][1], "valid_from": "2026-10-29"},
    ],
}

FLAT: dict[str, Any] = {
    "name": "flat",
    "revisions": [
        {
            "valid_from": "2020-01-01",
            "source": "test",
            "schedules": [{"bands": [{"start": "00:00", "end": "24:00", "period": "flat"}]}],
            "import_cny_per_kwh": {"flat": 0.61},
            "export_cny_per_kwh": 0.25,
            "gas_cny_per_m3": 3.1,
            "heat_cny_per_gj": 42.0,
        }
    ],
}


def with_tariff(sc: dict[str, Any], tariff: dict[str, Any]) -> dict[str, Any]:
    park = sc["park"].model_validate({**sc["park"].model_dump(), "tariff": tariff})
    return {**sc, "park": park}


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=1e-9, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(scenario())
def test_cost_is_additive_over_any_bucketing(sc: dict[str, Any]) -> None:
    sc = with_tariff(sc, WINDOW_TARIFF)
    results = {every: run(sc, every) for every in ("15m", "1h", "1d", "1mo")}
    ref = results["1mo"].total
    for every, r in results.items():
        # a bucket without any interval has no cost (null); the others add up
        priced = [b.fields for b in r.buckets if b.fields.cost is not None]
        assert priced
        # energy cost, its parts and the savings: buckets sum to the total, and every
        # bucketing gives the same total
        for key in ("energy_cny", "export_credit_cny", "fuel_cny", "heat_cny"):
            assert close(sum(f.cost[key] for f in priced), r.total.cost[key]), key
            assert close(r.total.cost[key], ref.cost[key]), (every, key)
        for key in ("renewable", "green_direct", "storage", "total"):
            parts = sum(f.cost["saved_cny"][key] for f in priced)
            assert close(parts, r.total.cost["saved_cny"][key])
        # demand peaks combine by maximum: the same month peaks and charge whatever `every`
        assert r.total.cost["demand_months"] == ref.cost["demand_months"]
        assert close(r.total.cost_cny, ref.cost_cny)
        assert close(sum(f.cost_cny for f in priced), r.total.cost_cny)
        peak = max(f.cost["demand_peak_kw"] for f in priced)
        assert close(peak, r.total.cost["demand_peak_kw"])
    # the window covers no month whole: no demand charge, cost is the energy cost
    assert close(ref.cost_cny, ref.cost["energy_cny"])


@settings(max_examples=25, deadline=None)
@given(scenario(), st.sampled_from(["15m", "1h", "1d", "1mo"]))
def test_flat_tariff_is_energy_times_price(sc: dict[str, Any], every: str) -> None:
    sc = with_tariff(sc, FLAT)
    t = run(sc, every).total
    lo, hi = to_ns(sc["start"]), to_ns(sc["end"])
    in_window = [r for r in sc["rows"] if lo <= r.start_ns < hi]
    if t.cost is None:  # no interval in the window to price: nothing bought or sold either
        assert t.grid_import_kwh == t.grid_export_kwh == t.heat_purchased_gj == 0.0
        assert not any(r.values.get("gas_m3") for r in in_window)
        return
    gas_m3 = sum(r.values.get("gas_m3", 0.0) for r in in_window if r.device == "gas")
    expected = (
        t.grid_import_kwh * 0.61
        - t.grid_export_kwh * 0.25
        + gas_m3 * 3.1
        + t.heat_purchased_gj * 42.0
    )
    assert close(t.cost["energy_cny"], expected)
    # what loads used (I + D + G − X − C + S) at 0.61, less what was paid for electricity
    loads = (
        t.grid_import_kwh
        + t.green_direct_kwh
        + t.renewable_kwh
        - t.grid_export_kwh
        - t.storage_charge_kwh
        + t.storage_discharge_kwh
    )
    paid = t.grid_import_kwh * 0.61 - t.grid_export_kwh * 0.25
    assert close(t.cost["saved_cny"]["total"], loads * 0.61 - paid)
