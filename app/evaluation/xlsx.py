"""XLSX rendering of the evaluation report (openpyxl): summary, indicators, monthly sheet."""

from __future__ import annotations

import io
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from app.evaluation.labels import (
    fmt_pct,
    fmt_target,
    indicator_rows,
    localized,
    note,
    projection_text,
    provenance_rows,
    quality_rows,
    t,
    target_status,
    verdict,
)
from app.evaluation.models import EvaluationReport, SizeBandTarget

_BOLD = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="DDEBF7")
_PASS_FILL = PatternFill("solid", fgColor="C6EFCE")
_FAIL_FILL = PatternFill("solid", fgColor="FFC7CE")


def _number_format(unit: str) -> str:
    return "0.0%" if unit == "ratio" else "0.000"


def _bold_header(ws: Worksheet, row: int, columns: int) -> None:
    for c in range(1, columns + 1):
        cell = ws.cell(row, c)
        cell.font = _BOLD
        cell.fill = _HEAD_FILL


def _summary(ws: Worksheet, doc: EvaluationReport, lang: str) -> None:
    """Title and the key: value lines of what the report is about and computed from."""
    ws.append([t("title", lang)])
    ws["A1"].font = Font(bold=True, size=14)
    window = doc.window
    meta: list[tuple[str, Any]] = [
        ("park", f"{doc.park_name or doc.park} ({doc.park})"),
        ("year", doc.year),
        ("factor_set", f"{doc.factor_set.name} — {doc.factor_set.description}"),
        ("window", f"{window.start} – {window.end}"),
        ("completeness", doc.completeness),
        ("months_with_data", ", ".join(doc.months_with_data) or "—"),
        ("energy", doc.energy_tce),
        ("energy_projected", doc.energy_tce_projected),
        ("projection", localized(doc.projection_method, lang)),
        ("projection_status", projection_text(doc, lang)),
        ("hash", doc.hash),
        *provenance_rows(doc),
    ]
    for key, value in meta:
        ws.append([t(key, lang), value])
        ws.cell(ws.max_row, 1).font = _BOLD
    ws.cell(6, 2).number_format = "0.0%"  # completeness
    ws.append([])


def _indicator_table(ws: Worksheet, doc: EvaluationReport, lang: str) -> None:
    """One row per indicator line, figures as numbers, verdicts filled green/red."""
    header = [
        "",
        t("indicator", lang),
        t("unit", lang),
        t("value", lang),
        t("target", lang),
        t("result", lang),
        t("projected", lang),
        t("projected_result", lang),
        t("months", lang),
        t("completeness", lang),
        t("target_status", lang),
    ]
    ws.append(header)
    _bold_header(ws, ws.max_row, len(header))
    for row in indicator_rows(doc, lang):
        ind = row.ind
        ws.append(
            [
                row.kind,
                row.name,
                row.unit,
                row.value,
                fmt_target(ind),
                verdict(row.passes, lang),
                row.projected,
                verdict(row.projected_passes, lang),
                ", ".join(ind.months) or "—",
                ind.completeness,
                target_status(ind, lang),
            ]
        )
        r = ws.max_row
        for c in (4, 7):
            ws.cell(r, c).number_format = _number_format(row.unit)
        ws.cell(r, 10).number_format = "0.0%"
        for c, ok in ((6, row.passes), (8, row.projected_passes)):
            if ok is not None:
                ws.cell(r, c).fill = _PASS_FILL if ok else _FAIL_FILL


def _notes(ws: Worksheet, doc: EvaluationReport, lang: str) -> None:
    core = doc.core
    ws.append([])
    ws.append([t("notes", lang)])
    ws.cell(ws.max_row, 1).font = _BOLD
    ws.append([t("before_offsets", lang), core.before_offsets])
    ws.cell(ws.max_row, 2).number_format = "0.000"
    ws.append([t("offsets_share", lang), fmt_pct(core.offsets_share)])
    if core.size_band is not None:
        ws.append([t("size_band", lang), _band_text(core.size_band)])
    for g in doc.guiding:
        text = note(g.id, lang)
        if text:
            ws.append([localized(g.name, lang), text])
    for w in doc.warnings:
        ws.append(["!", w])


#: the monthly sheet: (label key, MonthlyRow field, number format)
_MONTHLY_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("month", "month", None),
    ("consumption_kwh", "consumption_kwh", "0.0"),
    ("energy_tce", "energy_tce", "0.000"),
    ("net_t", "net_kg", "0.000"),
    ("tco2_per_tce", "tco2_per_tce", "0.000"),
    ("green_market_kwh", "green_market_kwh", "0.0"),
    ("heat_recovered_gj", "heat_recovered_gj", "0.000"),
    ("completeness", "completeness", "0.0%"),
    ("coverage", "coverage", "0.0%"),
)


def _monthly_sheet(ms: Worksheet, doc: EvaluationReport, lang: str) -> None:
    cols = _MONTHLY_COLUMNS
    ms.append([t(label, lang) for label, _, _ in cols])
    _bold_header(ms, 1, len(cols))
    for c in range(1, len(cols) + 1):
        ms.column_dimensions[get_column_letter(c)].width = 18
    for m in doc.monthly:
        values = []
        for _, key, _ in cols:
            v = getattr(m, key)
            values.append(v / 1000.0 if key == "net_kg" and v is not None else v)
        ms.append(values)
        for c, (_, _, fmt) in enumerate(cols, start=1):
            if fmt:
                ms.cell(ms.max_row, c).number_format = fmt


def _quality_sheet(qs: Worksheet, doc: EvaluationReport, lang: str) -> None:
    qs.append(
        [t("quality_category", lang), t("quality_intervals", lang), t("quality_devices", lang)]
    )
    _bold_header(qs, 1, 3)
    for c in range(1, 4):
        qs.column_dimensions[get_column_letter(c)].width = 32
    for label, count, devices in quality_rows(doc, lang):
        qs.append([label, count, devices])


def render_xlsx(doc: EvaluationReport, lang: str) -> bytes:
    """The report as an .xlsx file in `lang` (zh|en); the figures are numbers, not text."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = t("indicators", lang)
    _summary(ws, doc, lang)
    _indicator_table(ws, doc, lang)
    _notes(ws, doc, lang)
    for col, width in zip(range(1, 12), (22, 40, 10, 12, 12, 10, 14, 12, 28, 12, 30), strict=True):
        ws.column_dimensions[get_column_letter(col)].width = width
    _monthly_sheet(wb.create_sheet(t("monthly", lang)), doc, lang)
    _quality_sheet(wb.create_sheet(t("quality", lang)), doc, lang)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _band_text(band: SizeBandTarget) -> str:
    hi = band.max_tce
    span = f"{band.min_tce:,.0f}–{hi:,.0f}" if hi is not None else f"≥ {band.min_tce:,.0f}"
    return f"{span} tce/a: ≤ {band.max_tco2_per_tce} tCO2/tce"
