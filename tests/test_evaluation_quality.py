"""Evaluation: "insufficient data" below a month's worth of the year, and its quality section."""

from __future__ import annotations

import io
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import openpyxl
from msgspec.structs import replace

from app.accounting import CN_2023, compute_balance
from app.accounting.buckets import to_ns
from app.evaluation import build_report
from app.evaluation.pdf import render_pdf
from app.evaluation.report import MIN_PROJECTION_COVERAGE
from app.evaluation.xlsx import render_xlsx
from app.intervals.models import IntervalEnergy
from app.registry.models import Park

PARK = Park.model_validate(
    {
        "id": "p",
        "timezone": "Asia/Shanghai",
        "grid_region": "northeast",
        "interval_minutes": 60,
        "devices": [{"id": "grid-main", "role": "grid"}],
    }
)
Y0 = datetime.fromisoformat("2025-01-01T00:00:00+08:00")
Y1 = datetime.fromisoformat("2026-01-01T00:00:00+08:00")


def report(hours: int, glitch_hours: tuple[int, ...] = ()) -> dict:  # type: ignore[type-arg]
    rows = []
    for h in range(hours):
        s = to_ns(Y0 + timedelta(hours=h))
        row = IntervalEnergy(
            "p", "grid-main", "grid", s, s + 3_600 * 10**9, {"energy_import_kwh": 100.0}
        )
        rows.append(replace(row, flags=("glitch",)) if h in glitch_hours else row)
    result = compute_balance(PARK, rows, [], [], CN_2023, Y0, Y1, "1mo")
    return build_report(result, PARK, CN_2023, year=2025, year_start=Y0, year_end=Y1)


def test_two_days_of_a_year_give_no_projection() -> None:
    doc = report(48)
    # 48 of 8760 device-hours: 0.55 % of the year
    assert doc["projection"]["status"] == "insufficient_data"
    assert abs(doc["projection"]["year_coverage"] - 48 / 8760) < 1e-12
    core = doc["core"]
    assert core["projection"] == {"value": None, "pass": None, "status": "insufficient_data"}
    assert doc["energy_tce_projected"] is None
    assert any("insufficient data for a year-end projection" in w for w in doc["warnings"])
    # the year-to-date value itself is still shown: 100 kWh x 0.6096 / (100 x 0.1229 / 1000)
    assert abs(core["value"] - 0.6096 / 0.1229 * 1000 / 1000) < 1e-9


def test_a_month_and_a_day_is_enough() -> None:
    assert MIN_PROJECTION_COVERAGE == 1 / 12
    doc = report(31 * 24 + 24)  # 768 of 8760 h = 8.8 % >= 8.3 %
    assert doc["projection"]["status"] == "projected"
    assert doc["core"]["projection"]["status"] == "projected"
    # every hour the same: the projection equals the year-to-date ratio
    assert abs(doc["core"]["projection"]["value"] - doc["core"]["value"]) < 1e-9
    assert not any("insufficient" in w for w in doc["warnings"])


def test_quality_section_in_json_xlsx_and_pdf() -> None:
    doc = report(31 * 24 + 24, glitch_hours=(5, 6, 760))
    assert doc["quality"]["glitch"] == {"intervals": 3, "devices": ["grid-main"]}
    assert doc["quality"]["repaired"] is True
    assert doc["monthly"][0]["quality"]["glitch"]["intervals"] == 2
    assert doc["monthly"][1]["quality"]["glitch"]["intervals"] == 1
    assert any("figures rest on repaired data: glitch 3 (grid-main)" in w for w in doc["warnings"])
    wb = openpyxl.load_workbook(io.BytesIO(render_xlsx(doc, "en")))
    qs = wb["Data quality"]
    rows = [tuple(r) for r in qs.iter_rows(values_only=True)]
    assert ("Glitch-suppressed", 3, "grid-main") in rows
    assert ("Estimated (gap filled)", 0, None) in rows  # an empty cell
    pdf = render_pdf(doc, "en")
    assert pdf.startswith(b"%PDF")


def test_pdf_text_has_the_quality_section_and_insufficient_data(tmp_path: Path) -> None:
    doc = report(48, glitch_hours=(3,))
    path = tmp_path / "r.pdf"
    path.write_bytes(render_pdf(doc, "en"))
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True, text=True
    ).stdout
    assert "Data quality" in text
    assert "Glitch-suppressed" in text and "grid-main" in text
    assert "insufficient data (0.5% of the year has data, needs 8.3%)" in text
