"""Quality travels with the numbers: flagged interval rows counted per bucket and in total."""

from __future__ import annotations

from msgspec.structs import replace

from app.accounting import CN_2023, compute_balance
from app.accounting.totals import interval_totals
from tests.test_accounting_balance import balance, day_window, make_park, row

PARK = make_park(
    {"id": "grid-main", "role": "grid"},
    {"id": "pv-1", "role": "pv", "max_kw": 100},
    {"id": "bldg", "role": "load", "included_in": "grid-main"},
)


def rows() -> list:  # type: ignore[type-arg]
    g = [row(PARK, "grid-main", h, energy_import_kwh=100.0) for h in range(4)]
    pv = [row(PARK, "pv-1", h, energy_kwh=10.0) for h in range(4)]
    g[0] = replace(g[0], flags=("glitch",))
    g[1] = replace(g[1], flags=("counter_decrease", "suspect"))
    g[2] = replace(g[2], flags=("conflict", "gap"), estimated=True)
    pv[2] = replace(pv[2], flags=("implausible",))
    pv[3] = replace(pv[3], flags=("reset",))
    # a sub-meter's glitch does not stand behind any balance figure
    sub = row(PARK, "bldg", 0, energy_import_kwh=50.0)
    return [*g, *pv, replace(sub, flags=("glitch",))]


def test_interval_totals_name_the_devices_per_category() -> None:
    totals = interval_totals(rows(), PARK)
    assert [t.quality for t in totals] == [
        {"glitch": ("grid-main",)},
        {"glitch": ("grid-main",), "reset": ("grid-main",)},
        {"estimated": ("grid-main",), "implausible": ("pv-1",), "conflict": ("grid-main",)},
        {"reset": ("pv-1",)},
    ]


def test_each_bucket_and_the_total_carry_counts_and_devices() -> None:
    hourly = balance(PARK, rows(), "1h")
    q = [b.fields.quality for b in hourly.buckets]
    assert q[0]["glitch"] == {"intervals": 1, "devices": ["grid-main"]}
    assert q[0]["repaired"] is True
    assert q[1]["reset"] == {"intervals": 1, "devices": ["grid-main"]}
    assert q[2]["conflict"] == {"intervals": 1, "devices": ["grid-main"]}
    assert q[2]["estimated"] == {"intervals": 1, "devices": ["grid-main"]}
    assert q[2]["implausible"] == {"intervals": 1, "devices": ["pv-1"]}
    # hour 4 on: nothing behind the figures
    assert q[4] == {
        "estimated": {"intervals": 0, "devices": []},
        "glitch": {"intervals": 0, "devices": []},
        "implausible": {"intervals": 0, "devices": []},
        "conflict": {"intervals": 0, "devices": []},
        "reset": {"intervals": 0, "devices": []},
        "repaired": False,
    }
    total = hourly.total.quality
    assert total["glitch"] == {"intervals": 2, "devices": ["grid-main"]}
    assert total["reset"] == {"intervals": 2, "devices": ["grid-main", "pv-1"]}
    assert total["implausible"]["intervals"] == 1 and total["conflict"]["intervals"] == 1
    # the same in one daily bucket, and in the JSON body
    daily = balance(PARK, rows(), "1d")
    assert daily.buckets[0].fields.quality == total
    body = daily.as_dict()
    assert body["buckets"][0]["quality"]["glitch"]["devices"] == ["grid-main"]
    assert body["total"]["quality"]["repaired"] is True


def test_precomputed_totals_carry_the_same_quality() -> None:
    start, end = day_window(PARK)
    totals = interval_totals(rows(), PARK)
    direct = compute_balance(PARK, totals, [], [], CN_2023, start, end, "1d")
    assert direct.total.quality == balance(PARK, rows(), "1d").total.quality


def test_quality_survives_the_day_chains_sums_round_trip() -> None:
    from app.accounting import BalanceFields
    from app.accounting.result import Sums
    from app.balance.chain import sums_of

    days = [balance(PARK, rows(), "1d").total, balance(PARK, rows()[:1], "1d").total]
    total = Sums()
    for bf in days:
        total.add(sums_of(bf))
    both = BalanceFields.from_sums(total).quality
    assert both["glitch"] == {"intervals": 3, "devices": ["grid-main"]}
    assert both["reset"] == {"intervals": 2, "devices": ["grid-main", "pv-1"]}
    # adding did not leak into the days' own fields
    assert days[1].quality["glitch"]["intervals"] == 1
