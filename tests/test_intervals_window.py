"""A batch reaching further back than the engine's history window still emits every interval."""

from __future__ import annotations

from app.intervals import IntervalEngine
from app.registry import parse_registry
from app.telemetry.models import Reading

REG = parse_registry(
    "parks:\n  - id: p\n    timezone: UTC\n    devices:\n      - {id: m, role: load}\n"
)
MIN_NS = 60 * 10**9


def test_one_batch_of_three_days_with_a_one_day_window() -> None:
    engine = IntervalEngine(REG.park, history_window_s=86_400)
    # 3 days of 5-minute readings, 1 kWh a step: every quarter hour holds 3 kWh
    readings = [
        Reading("p", "m", k * 5 * MIN_NS, {"energy_import_kwh": float(k)})
        for k in range(3 * 24 * 12 + 1)
    ]
    out = engine.add(readings)
    assert len(out) == 3 * 24 * 4
    assert {i.values["energy_import_kwh"] for i in out} == {3.0}
    # and the window still applies afterwards: old history was pruned after emitting
    assert engine.horizon("p", "m") is not None
