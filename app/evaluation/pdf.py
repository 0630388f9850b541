"""PDF rendering of the evaluation report (reportlab): tables, a monthly bar chart, zh/en."""

from __future__ import annotations

import io
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
    note,
    projection_text,
    provenance_rows,
    quality_rows,
    t,
    target_status,
    verdict,
)

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


def _chart(doc: dict[str, Any], lang: str, width: float) -> Drawing:
    """Monthly bars for the 12 months of the year: energy (tce) and net emissions (tCO2)."""
    by_month = {m["month"]: m for m in doc["monthly"]}
    labels = [f"{doc['year']}-{k:02d}" for k in range(1, 13)]
    energy = [float(by_month[m]["energy_tce"]) if m in by_month else 0.0 for m in labels]
    net = [float(by_month[m]["net_kg"]) / 1000.0 if m in by_month else 0.0 for m in labels]
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


def render_pdf(doc: dict[str, Any], lang: str) -> bytes:
    """The report as an A4 PDF in `lang`, every glyph from the embedded report font."""
    _font()
    base = ParagraphStyle("base", fontName=FONT, fontSize=9, leading=12)
    small = ParagraphStyle("small", parent=base, fontSize=7.5, leading=10)
    h1 = ParagraphStyle("h1", parent=base, fontSize=16, leading=20, spaceAfter=6)
    h2 = ParagraphStyle("h2", parent=base, fontSize=11, leading=15, spaceBefore=8, spaceAfter=4)
    mono = ParagraphStyle("mono", parent=base, fontSize=7.5)

    buf = io.BytesIO()
    page = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
        title=f"{t('title', 'en')} {doc['park']} {doc['year']}",
        author="Lingtan",
        subject=doc["hash"],
        # the canvas opens every page with a font selection: ours, not Helvetica
        initialFontName=FONT,
        lang="zh-CN" if lang == "zh" else "en",
    )
    width = A4[0] - 30 * mm
    window = doc["window"]
    story: list[Any] = [
        _p(f"{t('title', lang)} — {doc['park_name'] or doc['park']} {doc['year']}", h1)
    ]
    meta = [
        (t("park", lang), f"{doc['park_name'] or doc['park']} ({doc['park']})"),
        (t("year", lang), str(doc["year"])),
        (
            t("factor_set", lang),
            f"{doc['factor_set']['name']} — {doc['factor_set']['description']}",
        ),
        (t("window", lang), f"{window['start']} – {window['end']}"),
        (t("completeness", lang), fmt_pct(doc["completeness"])),
        (t("months_with_data", lang), ", ".join(doc["months_with_data"]) or "—"),
        (t("energy", lang), fmt_value(doc["energy_tce"], "tce")),
        (t("energy_projected", lang), fmt_value(doc["energy_tce_projected"], "tce")),
        (t("projection_status", lang), projection_text(doc, lang)),
    ]
    meta_rows: list[list[Any]] = [[_p(k, base), _p(v, base)] for k, v in meta]
    meta_rows.append([_p(t("hash", lang), base), Paragraph(doc["hash"], mono)])
    for key, value in provenance_rows(doc):
        meta_rows.append([_p(t(key, lang), base), Paragraph(str(value), mono)])
    mt = Table(meta_rows, colWidths=[45 * mm, width - 45 * mm])
    mt.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("FONTNAME", (0, 0), (-1, -1), FONT),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#F2F2F2")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story += [mt, _p(t("indicators", lang), h2)]

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
    styles: list[tuple[Any, ...]] = [
        ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDEBF7")),
        ("FONTNAME", (0, 0), (-1, -1), FONT),
        ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ]
    for row in indicator_rows(doc, lang):
        ind = row["ind"]
        status = "" if ind.get("target_confirmed") else " *"
        rows.append(
            [
                _p(f"{row['name']}{status}", small),
                _p(fmt_value(row["value"], row["unit"]), small),
                _p(fmt_target(ind), small),
                _p(verdict(row["pass"], lang), _verdict_style(row["pass"], small)),
                _p(fmt_value(row["projected"], row["unit"]), small),
                _p(
                    verdict(row["projected_pass"], lang),
                    _verdict_style(row["projected_pass"], small),
                ),
                _p(fmt_pct(ind["completeness"]), small),
            ]
        )
    # the last column holds "Data completeness" on one line
    mid = (width - 78 * mm) / 5
    it = Table(rows, colWidths=[50 * mm] + [mid] * 5 + [28 * mm], repeatRows=1)
    it.setStyle(TableStyle(styles))
    story.append(it)
    unconfirmed = next((g for g in doc["guiding"] if not g["target_confirmed"]), None)
    if unconfirmed is not None:
        story.append(_p("* " + target_status(unconfirmed, lang), small))
    core = doc["core"]
    extra = [
        f"{t('before_offsets', lang)}: {fmt_value(core['before_offsets'], 'tCO2/tce')}",
        f"{t('offsets_share', lang)}: {fmt_pct(core['offsets_share'])}",
    ]
    for g in doc["guiding"]:
        if g.get("physical") is not None:
            extra.append(f"{g['name'][lang]} ({t('physical', lang)}): {fmt_pct(g['physical'])}")
    story += [_p(x, small) for x in extra]

    story += [Spacer(1, 4 * mm), _chart(doc, lang, width)]

    story.append(_p(t("monthly", lang), h2))
    mhead = [
        t("month", lang),
        t("consumption_kwh", lang),
        t("energy_tce", lang),
        t("net_t", lang),
        t("tco2_per_tce", lang),
        t("completeness", lang),
    ]
    mrows: list[list[Any]] = [[_p(h, small) for h in mhead]]
    for m in doc["monthly"]:
        mrows.append(
            [
                m["month"],
                f"{m['consumption_kwh']:,.1f}",
                f"{m['energy_tce']:,.3f}",
                f"{m['net_kg'] / 1000.0:,.3f}",
                fmt_value(m["tco2_per_tce"], "tCO2/tce"),
                fmt_pct(m["completeness"]),
            ]
        )
    mtab = Table(mrows, colWidths=[width / 6] * 6, repeatRows=1)
    mtab.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDEBF7")),
                ("FONTNAME", (0, 0), (-1, -1), FONT),
                ("FONTSIZE", (0, 0), (-1, -1), 8),
                ("ALIGN", (1, 1), (-1, -1), "RIGHT"),
            ]
        )
    )
    story.append(mtab)

    story.append(_p(t("quality", lang), h2))
    qhead = [t("quality_category", lang), t("quality_intervals", lang), t("quality_devices", lang)]
    qrows: list[list[Any]] = [[_p(h, small) for h in qhead]]
    for label, count, devices in quality_rows(doc, lang):
        qrows.append([_p(label, small), str(count), _p(devices or "—", small)])
    qtab = Table(qrows, colWidths=[60 * mm, 30 * mm, width - 90 * mm], repeatRows=1)
    qtab.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDEBF7")),
                ("FONTNAME", (0, 0), (-1, -1), FONT),
                ("FONTSIZE", (0, 0), (-1, -1), 8),
                ("ALIGN", (1, 1), (1, -1), "RIGHT"),
            ]
        )
    )
    story.append(qtab)

    story.append(_p(t("notes", lang), h2))
    notes = [doc["projection_method"][lang]]
    notes += [n for n in (note(g["id"], lang) for g in doc["guiding"]) if n]
    notes += list(doc["warnings"])
    missing = missing_glyphs(f"{doc['park_name']} {doc['factor_set']['description']}")
    if missing:
        notes.append(f"{t('missing_glyphs', lang)}: {' '.join(f'U+{ord(c):04X}' for c in missing)}")
    story += [_p(n, small) for n in notes]

    footer = f"{doc['park']} {doc['year']} · {doc['factor_set']['name']} · sha256 {doc['hash']}"

    def on_page(canvas: Canvas, _doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 6.5)
        canvas.drawString(15 * mm, 9 * mm, footer)
        canvas.drawRightString(A4[0] - 15 * mm, 9 * mm, str(canvas.getPageNumber()))
        canvas.restoreState()

    page.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buf.getvalue()
