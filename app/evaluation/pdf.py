"""PDF rendering of the evaluation report (reportlab): tables, a monthly bar chart, zh/en."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from app.evaluation.labels import (
    fmt_pct,
    fmt_target,
    fmt_value,
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
from app.evaluation.models import EvaluationReport, ShareIndicator

#: the one font of the report, Latin and Chinese alike: a subset of Noto Sans SC shipped with
#: the package (app/evaluation/fonts/README.md), embedded as a per-document subset
FONT = "LingtanNotoSansSC"
FONT_FILE = Path(__file__).parent / "fonts" / "NotoSansSC-Regular-subset.ttf"
_GREEN = colors.HexColor("#2E7D32")
_RED = colors.HexColor("#C62828")


def _font() -> TTFont:
    """The report font, registered with reportlab on first use."""
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT, str(FONT_FILE)))
    font = pdfmetrics.getFont(FONT)
    assert isinstance(font, TTFont)
    return font


def missing_glyphs(text: str) -> str:
    """The characters of `text` the report font cannot draw (shown as boxes), in order."""
    cmap = _font().face.charToGlyph
    seen: dict[str, None] = {}
    for ch in text:
        if ord(ch) >= 0x20 and ord(ch) not in cmap:
            seen.setdefault(ch)
    return "".join(seen)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(_esc(text), style)


def _chart(doc: EvaluationReport, lang: str, width: float) -> Drawing:
    """Monthly bars for the 12 months of the year: energy (tce) and net emissions (tCO2)."""
    by_month = {m.month: m for m in doc.monthly}
    labels = [f"{doc.year}-{k:02d}" for k in range(1, 13)]
    energy = [float(by_month[m].energy_tce) if m in by_month else 0.0 for m in labels]
    net = [float(by_month[m].net_kg) / 1000.0 if m in by_month else 0.0 for m in labels]
    height = 62 * mm
    d = Drawing(width, height, initialFontName=FONT)
    d.add(String(0, height - 10, t("chart", lang), fontName=FONT, fontSize=10))
    bc = VerticalBarChart()
    bc.x, bc.y = 30, 28
    bc.width, bc.height = width - 40, height - 55
    bc.data = [energy, net]
    bc.categoryAxis.categoryNames = [m[-2:] for m in labels]
    bc.categoryAxis.labels.fontName = FONT
    bc.categoryAxis.labels.fontSize = 7
    bc.valueAxis.labels.fontName = FONT
    bc.valueAxis.labels.fontSize = 7
    bc.valueAxis.valueMin = min(0.0, *net)
    bc.valueAxis.forceZero = True
    bc.bars[0].fillColor = colors.HexColor("#4472C4")
    bc.bars[1].fillColor = colors.HexColor("#ED7D31")
    bc.groupSpacing = 6
    d.add(bc)
    legend = Legend()
    legend.x, legend.y = 40, 10
    legend.fontName = FONT
    legend.fontSize = 8
    legend.alignment = "right"
    legend.columnMaximum = 1
    legend.colorNamePairs = [
        (colors.HexColor("#4472C4"), t("energy_tce", lang)),
        (colors.HexColor("#ED7D31"), t("net_t", lang)),
    ]
    d.add(legend)
    return d


def _verdict_style(ok: bool | None, style: ParagraphStyle) -> ParagraphStyle:
    if ok is None:
        return style
    color = _GREEN if ok else _RED
    return ParagraphStyle(f"{style.name}-{ok}", parent=style, textColor=color)


@dataclass(frozen=True, slots=True)
class _Styles:
    """The paragraph styles of the report, all in the report font."""

    base: ParagraphStyle
    small: ParagraphStyle
    h1: ParagraphStyle
    h2: ParagraphStyle
    mono: ParagraphStyle

    @classmethod
    def make(cls) -> _Styles:
        base = ParagraphStyle("base", fontName=FONT, fontSize=9, leading=12)
        return cls(
            base=base,
            small=ParagraphStyle("small", parent=base, fontSize=7.5, leading=10),
            h1=ParagraphStyle("h1", parent=base, fontSize=16, leading=20, spaceAfter=6),
            h2=ParagraphStyle(
                "h2", parent=base, fontSize=11, leading=15, spaceBefore=8, spaceAfter=4
            ),
            mono=ParagraphStyle("mono", parent=base, fontSize=7.5),
        )


def _grid_table(rows: list[list[Any]], col_widths: list[float], *extra: Any, **kw: Any) -> Table:
    """A gridded table in the report font: a blue header row, 8 pt, plus `extra` styles."""
    table = Table(rows, colWidths=col_widths, **kw)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDEBF7")),
                ("FONTNAME", (0, 0), (-1, -1), FONT),
                ("FONTSIZE", (0, 0), (-1, -1), 8),
                *extra,
            ]
        )
    )
    return table


def _header(doc: EvaluationReport, lang: str, st: _Styles, width: float) -> list[Any]:
    """The title and the table of what the report is about and computed from."""
    name = doc.park_name or doc.park
    window = doc.window
    meta = [
        (t("park", lang), f"{name} ({doc.park})"),
        (t("year", lang), str(doc.year)),
        (t("factor_set", lang), f"{doc.factor_set.name} — {doc.factor_set.description}"),
        (t("window", lang), f"{window.start} – {window.end}"),
        (t("completeness", lang), fmt_pct(doc.completeness)),
        (t("months_with_data", lang), ", ".join(doc.months_with_data) or "—"),
        (t("energy", lang), fmt_value(doc.energy_tce, "tce")),
        (t("energy_projected", lang), fmt_value(doc.energy_tce_projected, "tce")),
        (t("projection_status", lang), projection_text(doc, lang)),
    ]
    rows: list[list[Any]] = [[_p(k, st.base), _p(v, st.base)] for k, v in meta]
    rows.append([_p(t("hash", lang), st.base), Paragraph(doc.hash, st.mono)])
    for key, value in provenance_rows(doc):
        rows.append([_p(t(key, lang), st.base), Paragraph(str(value), st.mono)])
    table = Table(rows, colWidths=[45 * mm, width - 45 * mm])
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("FONTNAME", (0, 0), (-1, -1), FONT),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#F2F2F2")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return [_p(f"{t('title', lang)} — {name} {doc.year}", st.h1), table]


def _indicators(doc: EvaluationReport, lang: str, st: _Styles, width: float) -> list[Any]:
    """The indicator table (verdicts coloured, `*` on unconfirmed targets) and its notes."""
    small = st.small
    head = [
        t("indicator", lang),
        t("value", lang),
        t("target", lang),
        t("result", lang),
        t("projected", lang),
        t("projected_result", lang),
        t("completeness", lang),
    ]
    rows: list[list[Any]] = [[_p(h, small) for h in head]]
    for row in indicator_rows(doc, lang):
        ind = row.ind
        status = "" if ind.target_confirmed else " *"
        rows.append(
            [
                _p(f"{row.name}{status}", small),
                _p(fmt_value(row.value, row.unit), small),
                _p(fmt_target(ind), small),
                _p(verdict(row.passes, lang), _verdict_style(row.passes, small)),
                _p(fmt_value(row.projected, row.unit), small),
                _p(
                    verdict(row.projected_passes, lang),
                    _verdict_style(row.projected_passes, small),
                ),
                _p(fmt_pct(ind.completeness), small),
            ]
        )
    # the last column holds "Data completeness" on one line
    mid = (width - 78 * mm) / 5
    table = _grid_table(
        rows,
        [50 * mm] + [mid] * 5 + [28 * mm],
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        repeatRows=1,
    )
    out: list[Any] = [_p(t("indicators", lang), st.h2), table]
    unconfirmed = next((g for g in doc.guiding if not g.target_confirmed), None)
    if unconfirmed is not None:
        out.append(_p("* " + target_status(unconfirmed, lang), small))
    core = doc.core
    extra = [
        f"{t('before_offsets', lang)}: {fmt_value(core.before_offsets, 'tCO2/tce')}",
        f"{t('offsets_share', lang)}: {fmt_pct(core.offsets_share)}",
    ]
    for g in doc.guiding:
        if isinstance(g, ShareIndicator) and g.physical is not None:
            extra.append(
                f"{localized(g.name, lang)} ({t('physical', lang)}): {fmt_pct(g.physical)}"
            )
    return out + [_p(x, small) for x in extra]


def _monthly(doc: EvaluationReport, lang: str, st: _Styles, width: float) -> list[Any]:
    head = [
        t("month", lang),
        t("consumption_kwh", lang),
        t("energy_tce", lang),
        t("net_t", lang),
        t("tco2_per_tce", lang),
        t("completeness", lang),
    ]
    rows: list[list[Any]] = [[_p(h, st.small) for h in head]]
    for m in doc.monthly:
        rows.append(
            [
                m.month,
                f"{m.consumption_kwh:,.1f}",
                f"{m.energy_tce:,.3f}",
                f"{m.net_kg / 1000.0:,.3f}",
                fmt_value(m.tco2_per_tce, "tCO2/tce"),
                fmt_pct(m.completeness),
            ]
        )
    table = _grid_table(rows, [width / 6] * 6, ("ALIGN", (1, 1), (-1, -1), "RIGHT"), repeatRows=1)
    return [_p(t("monthly", lang), st.h2), table]


def _quality(doc: EvaluationReport, lang: str, st: _Styles, width: float) -> list[Any]:
    head = [t("quality_category", lang), t("quality_intervals", lang), t("quality_devices", lang)]
    rows: list[list[Any]] = [[_p(h, st.small) for h in head]]
    for label, count, devices in quality_rows(doc, lang):
        rows.append([_p(label, st.small), str(count), _p(devices or "—", st.small)])
    table = _grid_table(
        rows,
        [60 * mm, 30 * mm, width - 90 * mm],
        ("ALIGN", (1, 1), (1, -1), "RIGHT"),
        repeatRows=1,
    )
    return [_p(t("quality", lang), st.h2), table]


def _notes(doc: EvaluationReport, lang: str, st: _Styles) -> list[Any]:
    """Projection method, notes on the indicators, warnings, glyphs the font lacks."""
    notes = [localized(doc.projection_method, lang)]
    notes += [n for n in (note(g.id, lang) for g in doc.guiding) if n]
    notes += list(doc.warnings)
    missing = missing_glyphs(f"{doc.park_name} {doc.factor_set.description}")
    if missing:
        notes.append(f"{t('missing_glyphs', lang)}: {' '.join(f'U+{ord(c):04X}' for c in missing)}")
    return [_p(t("notes", lang), st.h2)] + [_p(n, st.small) for n in notes]


def render_pdf(doc: EvaluationReport, lang: str) -> bytes:
    """The report as an A4 PDF in `lang`, every glyph from the embedded report font."""
    _font()
    st = _Styles.make()
    buf = io.BytesIO()
    page = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
        title=f"{t('title', 'en')} {doc.park} {doc.year}",
        author="Lingtan",
        subject=doc.hash,
        # the canvas opens every page with a font selection: ours, not Helvetica
        initialFontName=FONT,
        lang="zh-CN" if lang == "zh" else "en",
    )
    width = A4[0] - 30 * mm
    story = [
        *_header(doc, lang, st, width),
        *_indicators(doc, lang, st, width),
        Spacer(1, 4 * mm),
        _chart(doc, lang, width),
        *_monthly(doc, lang, st, width),
        *_quality(doc, lang, st, width),
        *_notes(doc, lang, st),
    ]
    footer = f"{doc.park} {doc.year} · {doc.factor_set.name} · sha256 {doc.hash}"

    def on_page(canvas: Canvas, _doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 6.5)
        canvas.drawString(15 * mm, 9 * mm, footer)
        canvas.drawRightString(A4[0] - 15 * mm, 9 * mm, str(canvas.getPageNumber()))
        canvas.restoreState()

    page.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buf.getvalue()
