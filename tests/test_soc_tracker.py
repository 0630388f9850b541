"""Storage intervals carry the last state of charge at or before their end."""

from __future__ import annotations

from app.intervals.models import IntervalEnergy
from app.registry import parse_registry
from app.telemetry.models import Reading
from collectors.soc import SocTracker

REG = parse_registry(
    """
parks:
  - id: p
    devices:
      - {id: bess, role: storage, capacity_kwh: 100}
      - {id: pv, role: pv}
"""
)
M = 60 * 10**9


def iv(device: str, start_min: int) -> IntervalEnergy:
    return IntervalEnergy("p", device, "storage", start_min * M, (start_min + 15) * M, {"x": 1.0})


def test_last_soc_in_the_interval_including_its_end() -> None:
    t = SocTracker(REG)
    t.add(
        [
            Reading("p", "bess", 5 * M, {"soc_pct": 40.0}),
            Reading("p", "bess", 15 * M, {"soc_pct": 45.0}),  # at the end of [0, 15)
            Reading("p", "bess", 20 * M, {"soc_pct": 50.0}),
            Reading("p", "pv", 10 * M, {"soc_pct": 99.0}),  # not storage: ignored
        ]
    )
    out = t.stamp([iv("bess", 0), iv("bess", 15), iv("bess", 30), iv("pv", 0)])
    assert out[0].values["soc_pct"] == 45.0
    assert out[1].values["soc_pct"] == 50.0
    assert "soc_pct" not in out[2].values  # no SoC reading inside (30, 45]
    assert "soc_pct" not in out[3].values


def test_out_of_order_and_duplicate_timestamps() -> None:
    t = SocTracker(REG)
    t.add([Reading("p", "bess", 10 * M, {"soc_pct": 60.0})])
    t.add([Reading("p", "bess", 4 * M, {"soc_pct": 20.0})])  # late, earlier
    t.add([Reading("p", "bess", 10 * M, {"soc_pct": 61.0})])  # same ts again: last wins
    (out,) = t.stamp([iv("bess", 0)])
    assert out.values["soc_pct"] == 61.0
