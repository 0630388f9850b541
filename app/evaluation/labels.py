"""Labels (zh/en) and value formatting shared by the XLSX and PDF renderings of the report."""

from __future__ import annotations

from typing import Any

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


def fmt_target(ind: dict[str, Any]) -> str:
    target = ind.get("target")
    if target is None:
        return "—"
    sign = "≤" if ind.get("comparison") == "<=" else "≥"
    return f"{sign} {fmt_value(float(target), str(ind['unit']))}"


def indicator_rows(doc: dict[str, Any], lang: str) -> list[dict[str, Any]]:
    """One row per indicator line: core (market), core (location), then the guiding ones."""
    core = doc["core"]
    name = core["name"][lang]
    rows = [
        {
            "kind": t("core", lang),
            "name": f"{name}（{t('market', lang)}）"
            if lang == "zh"
            else f"{name} ({t('market', lang)})",
            "unit": core["unit"],
            "ind": core,
            "value": core["value"],
            "pass": core["pass"],
            "projected": core["projection"]["value"],
            "projected_pass": core["projection"]["pass"],
        },
        {
            "kind": t("core", lang),
            "name": f"{name}（{t('location', lang)}）"
            if lang == "zh"
            else f"{name} ({t('location', lang)})",
            "unit": core["unit"],
            "ind": core,
            "value": core["location_based"]["value"],
            "pass": core["location_based"]["pass"],
            "projected": core["location_based"]["projection"]["value"],
            "projected_pass": core["location_based"]["projection"]["pass"],
        },
    ]
    for g in doc["guiding"]:
        rows.append(
            {
                "kind": t("guiding", lang),
                "name": g["name"][lang],
                "unit": g["unit"],
                "ind": g,
                "value": g["value"],
                "pass": g["pass"],
                "projected": g["projection"]["value"],
                "projected_pass": g["projection"]["pass"],
            }
        )
    return rows


def target_status(ind: dict[str, Any], lang: str) -> str:
    return t("confirmed", lang) if ind.get("target_confirmed") else t("unconfirmed", lang)


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def provenance_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(label key, text) of what the report was computed against: registry version and the
    audit log's head (an anchor for `lingtan audit verify --anchor`)."""
    prov = doc.get("provenance") or {}
    head = prov.get("audit_head")
    return [
        ("registry_version", str(prov.get("registry_version", "—"))),
        ("audit_head", head["anchor"] if head else "—"),
    ]


def quality_rows(doc: dict[str, Any], lang: str) -> list[tuple[str, int, str]]:
    """(category label, device-intervals, devices) of the report's quality section."""
    quality = doc.get("quality") or {}
    out = []
    for key in QUALITY_KEYS:
        q = quality.get(key) or {"intervals": 0, "devices": []}
        out.append((t(f"q_{key}", lang), int(q["intervals"]), ", ".join(q["devices"])))
    return out


def projection_text(doc: dict[str, Any], lang: str) -> str:
    """ "insufficient data (0.5 % of the year, needs 8.3 %)" or the share the projection uses."""
    p = doc.get("projection") or {}
    share = fmt_pct(p.get("year_coverage"))
    if p.get("status") == "insufficient_data":
        need = fmt_pct(p.get("min_coverage"))
        if lang == "zh":
            return f"{t('insufficient', lang)}（全年数据覆盖 {share}，至少需 {need}）"
        return f"{t('insufficient', lang)} ({share} of the year has data, needs {need})"
    return f"{share}（全年数据覆盖）" if lang == "zh" else f"from {share} of the year with data"
