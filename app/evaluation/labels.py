"""Labels (zh/en) and value formatting shared by the XLSX and PDF renderings of the report."""

from __future__ import annotations

from dataclasses import dataclass

from app.evaluation.models import EvaluationReport, Indicator, Lang, QualityCategory

LANGS = ("zh", "en")

_L: dict[str, tuple[str, str]] = {
    "title": ("零碳园区评价报告", "Zero-carbon park evaluation report"),
    "park": ("园区", "Park"),
    "year": ("年度", "Year"),
    "factor_set": ("排放因子集", "Factor set"),
    "window": ("数据时段", "Data window"),
    "completeness": ("数据完整率", "Data completeness"),
    "months_with_data": ("有数据的月份", "Months with data"),
    "energy": ("综合能耗（tce）", "Energy consumption (tce)"),
    "energy_projected": ("年末预测综合能耗（tce）", "Projected annual energy (tce)"),
    "hash": ("报告哈希（SHA-256）", "Report hash (SHA-256)"),
    "registry_version": ("园区登记版本", "Park registry version"),
    "audit_head": ("审计日志锚点（序号:哈希）", "Audit log anchor (seq:hash)"),
    "projection": ("预测方法", "Projection method"),
    "indicators": ("评价指标", "Indicators"),
    "indicator": ("指标", "Indicator"),
    "unit": ("单位", "Unit"),
    "value": ("当前值", "Value"),
    "target": ("目标", "Target"),
    "result": ("结论", "Result"),
    "projected": ("年末预测", "Year-end projection"),
    "projected_result": ("预测结论", "Projected result"),
    "months": ("月份", "Months"),
    "target_status": ("目标来源", "Target status"),
    "confirmed": ("已确认", "confirmed"),
    "unconfirmed": (
        "未经官方附件确认（可配置）",
        "not confirmed from the official annex (configurable)",
    ),
    "pass": ("达标", "pass"),
    "fail": ("未达标", "fail"),
    "na": ("—", "n/a"),
    "market": ("市场法", "market-based"),
    "location": ("基于位置法", "location-based"),
    "core": ("核心指标", "Core indicator"),
    "guiding": ("引导性指标", "Guiding indicator"),
    "monthly": ("月度数据", "Monthly data"),
    "month": ("月份", "Month"),
    "consumption_kwh": ("用电量（kWh）", "Electricity (kWh)"),
    "energy_tce": ("综合能耗（tce）", "Energy (tce)"),
    "net_t": ("净排放（tCO2，市场法）", "Net emissions (tCO2, market)"),
    "tco2_per_tce": ("单位能耗碳排放（tCO2/tce）", "tCO2/tce"),
    "green_market_kwh": ("绿色电力（kWh，市场法）", "Green electricity (kWh, market)"),
    "heat_recovered_gj": ("余热回收（GJ）", "Recovered heat (GJ)"),
    "coverage": ("覆盖率", "Coverage"),
    "chart": ("月度综合能耗与净排放", "Monthly energy and net emissions"),
    "notes": ("说明", "Notes"),
    "missing_glyphs": (
        "报告字体中缺少的字符（显示为方框）",
        "characters missing from the report font (shown as boxes)",
    ),
    "before_offsets": ("抵消前单位能耗碳排放", "tCO2/tce before offsets"),
    "offsets_share": ("抵消量占比", "Share covered by offsets"),
    "physical": ("物理法", "physical"),
    "size_band": ("规模档位", "Size band"),
    "quality": ("数据质量", "Data quality"),
    "quality_category": ("类别", "Category"),
    "quality_intervals": ("设备区间数", "Device-intervals"),
    "quality_devices": ("设备", "Devices"),
    "q_estimated": ("估算（缺数填补）", "Estimated (gap filled)"),
    "q_glitch": ("异常读数已剔除", "Glitch-suppressed"),
    "q_implausible": ("不合理增量（未计入）", "Implausible (not counted)"),
    "q_conflict": ("冲突读数（保留首条）", "Conflicting readings (first kept)"),
    "q_reset": ("计量表复位", "Meter reset"),
    "projection_status": ("年末预测", "Year-end projection"),
    "insufficient": ("数据不足", "insufficient data"),
}

QUALITY_KEYS = ("estimated", "glitch", "implausible", "conflict", "reset")

NOTES: dict[str, tuple[str, str]] = {
    "clean_energy_share": (
        "清洁能源 = 绿色电力（市场法，含绿证）按当量折标 / 综合能耗。",
        "Clean energy = green electricity (market-based, with certificates) in tce at the "
        "calorific equivalent / total energy consumption.",
    ),
    "waste_heat_utilisation": (
        "余热利用率 = 回收热量 /（回收热量 + 外购热力 + 燃料热量），"
        "燃料热量按折标煤 × 29.3076 GJ/tce。",
        "Waste-heat utilisation = recovered heat / (recovered + purchased heat + fuel heat); "
        "fuel heat = fuel standard coal × 29.3076 GJ/tce.",
    ),
}


def t(key: str, lang: str) -> str:
    zh, en = _L[key]
    return zh if lang == "zh" else en


def note(key: str, lang: str) -> str | None:
    pair = NOTES.get(key)
    if pair is None:
        return None
    return pair[0] if lang == "zh" else pair[1]


def verdict(value: bool | None, lang: str) -> str:
    if value is None:
        return t("na", lang)
    return t("pass", lang) if value else t("fail", lang)


def fmt_value(value: float | None, unit: str) -> str:
    """A value as shown in the PDF: ratios as percentages, tCO2/tce with 3 decimals."""
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    return f"{value:.3f}"


def fmt_target(ind: Indicator) -> str:
    if ind.target is None:
        return "—"
    sign = "≤" if ind.comparison == "<=" else "≥"
    return f"{sign} {fmt_value(ind.target, ind.unit)}"


@dataclass(frozen=True, slots=True)
class IndicatorRow:
    """One line of the indicator table: the verdicts of one view of one indicator."""

    #: "Core indicator" or "Guiding indicator", in the report's language
    kind: str
    name: str
    #: "tCO2/tce" or "ratio"
    unit: str
    ind: Indicator
    value: float | None
    passes: bool | None
    projected: float | None
    projected_passes: bool | None


def _view_name(name: str, view: str, lang: str) -> str:
    return f"{name}（{t(view, lang)}）" if lang == "zh" else f"{name} ({t(view, lang)})"


def indicator_rows(doc: EvaluationReport, lang: str) -> list[IndicatorRow]:
    """One row per indicator line: core (market), core (location), then the guiding ones."""
    core = doc.core
    name = core.name[_lang(lang)]
    loc = core.location_based
    rows = [
        IndicatorRow(
            t("core", lang),
            _view_name(name, "market", lang),
            core.unit,
            core,
            core.value,
            core.passes,
            core.projection.value,
            core.projection.passes,
        ),
        IndicatorRow(
            t("core", lang),
            _view_name(name, "location", lang),
            core.unit,
            core,
            loc.value,
            loc.passes,
            loc.projection.value,
            loc.projection.passes,
        ),
    ]
    for g in doc.guiding:
        rows.append(
            IndicatorRow(
                t("guiding", lang),
                g.name[_lang(lang)],
                g.unit,
                g,
                g.value,
                g.passes,
                g.projection.value,
                g.projection.passes,
            )
        )
    return rows


def target_status(ind: Indicator, lang: str) -> str:
    return t("confirmed", lang) if ind.target_confirmed else t("unconfirmed", lang)


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def provenance_rows(doc: EvaluationReport) -> list[tuple[str, str]]:
    """(label key, text) of what the report was computed against: registry version and the
    audit log's head (an anchor for `lingtan audit verify --anchor`)."""
    head = doc.provenance.audit_head
    return [
        ("registry_version", str(doc.provenance.registry_version)),
        ("audit_head", head.anchor if head else "—"),
    ]


def quality_rows(doc: EvaluationReport, lang: str) -> list[tuple[str, int, str]]:
    """(category label, device-intervals, devices) of the report's quality section."""
    out = []
    for key in QUALITY_KEYS:
        q: QualityCategory = getattr(doc.quality, key)
        out.append((t(f"q_{key}", lang), q.intervals, ", ".join(q.devices)))
    return out


def projection_text(doc: EvaluationReport, lang: str) -> str:
    """ "insufficient data (0.5 % of the year, needs 8.3 %)" or the share the projection uses."""
    p = doc.projection
    share = fmt_pct(p.year_coverage)
    if p.status == "insufficient_data":
        need = fmt_pct(p.min_coverage)
        if lang == "zh":
            return f"{t('insufficient', lang)}（全年数据覆盖 {share}，至少需 {need}）"
        return f"{t('insufficient', lang)} ({share} of the year has data, needs {need})"
    return f"{share}（全年数据覆盖）" if lang == "zh" else f"from {share} of the year with data"


def localized(text: dict[Lang, str], lang: str) -> str:
    """`text` in `lang` (zh|en)."""
    return text[_lang(lang)]


def _lang(lang: str) -> Lang:
    return "zh" if lang == "zh" else "en"
