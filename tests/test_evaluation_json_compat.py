"""The typed evaluation report serves the very JSON the dict-built report served, byte for byte.

`tests/data/evaluation-golden.json` holds, per fixed dataset below, the JSON document the
route served before the report became pydantic models (`build_report` returning a dict,
commit 070a8e8), written with `python -m tests.test_evaluation_json_compat` on that commit.
It is the old implementation's output, the oracle of compatibility, not the new code's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from app.accounting import CN_2023, compute_balance
from app.accounting.buckets import to_ns
from app.accounting.ledger_types import Certificate, Offset
from app.evaluation import (
    EvaluationConfig,
    EvaluationReport,
    SizeBand,
    build_report,
    canonical_json,
    report_hash,
)
from app.intervals.models import IntervalEnergy
from app.registry import parse_registry

GOLDEN = Path(__file__).parent / "data" / "evaluation-golden.json"
REGISTRY_YAML = """
parks:
  - id: compat
    name: 零碳兼容园
    timezone: Asia/Shanghai
    grid_region: northeast
    factor_set: cn-2023
    interval_minutes: 60
    devices:
      - {id: grid, role: grid}
      - {id: pv, role: pv}
      - {id: boiler, role: heat_fuel, fuel: natural_gas}
      - {id: steam, role: heat_purchased}
      - {id: whr, role: heat_recovered}
"""
PARK = parse_registry(REGISTRY_YAML).park("compat")
assert PARK is not None
Y0 = datetime(2025, 1, 1, tzinfo=PARK.tz)
Y1 = datetime(2026, 1, 1, tzinfo=PARK.tz)


def _hour(start: datetime, grid_kwh: float, flags: tuple[str, ...] = ()) -> list[IntervalEnergy]:
    s = to_ns(start)
    e = s + 3_600_000_000_000
    values = {
        "grid": ("grid", {"energy_import_kwh": grid_kwh, "energy_export_kwh": 0.0}),
        "pv": ("pv", {"energy_kwh": 50.0}),
        "boiler": ("heat_fuel", {"gas_m3": 10.0}),
        "steam": ("heat_purchased", {"heat_gj": 1.0}),
        "whr": ("heat_recovered", {"heat_gj": 2.0}),
    }
    rows = [IntervalEnergy("compat", d, role, s, e, dict(v)) for d, (role, v) in values.items()]
    return [replace(r, flags=flags) if r.device == "grid" else r for r in rows]


def _rows(hours: int, *, every: int = 1, glitch: tuple[int, ...] = ()) -> list[IntervalEnergy]:
    out: list[IntervalEnergy] = []
    for h in range(0, hours, every):
        flags = ("glitch",) if h in glitch else ()
        out += _hour(Y0 + timedelta(hours=h), 100.0 + h % 7, flags)
    return out


def _report(
    rows: list[IntervalEnergy],
    end: datetime = Y1,
    *,
    config: EvaluationConfig | None = None,
    head: tuple[int, str] | None = None,
) -> Any:
    certs = [Certificate("gec-1", "compat", "gec", 20.0, Y0, Y1)]
    offsets = [Offset("ccer-1", "compat", "ccer", 10.0, date(2025, 2, 1))]
    result = compute_balance(PARK, rows, certs, offsets, CN_2023, Y0, end, "1mo")
    extra: dict[str, Any] = {} if config is None else {"config": config}
    return build_report(
        result,
        PARK,
        CN_2023,
        year=2025,
        year_start=Y0,
        year_end=Y1,
        registry_version=4,
        audit_head=head,
        **extra,
    )


#: name -> the report of a fixed dataset
DATASETS: dict[str, Callable[[], Any]] = {
    # Jan-Feb every hour, March every other hour, glitches, a certificate and an offset
    "quarter": lambda: _report(
        _rows(744 + 672)
        + [
            r
            for r in _rows(744 + 672 + 744, every=2)
            if r.start_ns >= to_ns(datetime(2025, 3, 1, tzinfo=PARK.tz))
        ],
        head=(12, "ab" * 32),
    ),
    # two days of the year so far: insufficient data for a projection
    "two_days": lambda: _report(_rows(48, glitch=(3, 40)), datetime(2025, 1, 3, tzinfo=PARK.tz)),
    # no data at all in a year that has begun
    "empty": lambda: _report([], datetime(2025, 2, 10, tzinfo=PARK.tz)),
    # configured bands and targets, confirmed, with notes
    "configured": lambda: _report(
        _rows(24 * 60, glitch=(5, 6, 760)),
        config=EvaluationConfig(
            size_bands=(SizeBand(0.0, 1000.0, 5.0), SizeBand(1000.0, None, 1.0)),
            clean_energy_share_min=0.05,
            green_electricity_share_min=0.5,
            waste_heat_utilisation_min=0.6,
            guiding_targets_confirmed=True,
            notes=("targets of the 2025 annex",),
        ),
        head=(1, "00" * 32),
    ),
}


def _served(doc: Any) -> Any:
    """The JSON value the route hands to FastAPI for this report."""
    return doc if isinstance(doc, dict) else doc.model_dump(mode="json")


def _text(value: Any) -> str:
    """The body FastAPI's JSONResponse writes (key order kept, as served)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_json_is_byte_for_byte_the_dict_report(name: str) -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))[name]
    served = _served(DATASETS[name]())
    assert _text(served) == _text(golden)
    assert canonical_json(served) == canonical_json(golden)
    assert served["hash"] == golden["hash"] == report_hash(golden)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_served_json_reads_back_into_the_model(name: str) -> None:
    """A client can parse the served document with the models and get the same report."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))[name]
    parsed = EvaluationReport.model_validate(golden)
    assert parsed == DATASETS[name]()
    assert _text(parsed.model_dump(mode="json")) == _text(golden)
    assert report_hash(parsed) == golden["hash"]
    # the dict view of the old report: a top-level key gives its JSON value
    assert parsed["core"] == golden["core"] and parsed["hash"] == golden["hash"]
    with pytest.raises(KeyError):
        parsed["nope"]


def test_the_datasets_cover_every_section() -> None:
    """The golden documents are not trivial: both projection states, indicators with and
    without targets, repaired data, an audit anchor and none, notes."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    states = {d["projection"]["status"] for d in golden.values()}
    assert states == {"projected", "insufficient_data"}
    assert any(d["quality"]["repaired"] for d in golden.values())
    assert any(d["provenance"]["audit_head"] is None for d in golden.values())
    assert any(d["provenance"]["audit_head"] is not None for d in golden.values())
    assert any(g["pass"] is True for d in golden.values() for g in d["guiding"])
    assert any(d["core"]["offsets_share"] for d in golden.values())
    assert "targets of the 2025 annex" in golden["configured"]["warnings"]


if __name__ == "__main__":
    GOLDEN.write_text(
        json.dumps(
            {name: _served(make()) for name, make in sorted(DATASETS.items())},
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
