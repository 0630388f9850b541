# Long module: build_report and the indicator helpers only it uses; the shapes are models.py.
"""Zero-carbon park evaluation (docs/evaluation.md): indicators, targets, coverage, projection."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.accounting import BalanceFields, BalanceResult, FactorSet
from app.accounting.totals import QUALITY_CATEGORIES
from app.evaluation.models import (
    AuditAnchor,
    Comparison,
    CoreIndicator,
    EvaluationReport,
    FactorSetRef,
    HeatIndicator,
    Indicator,
    Lang,
    LocationView,
    MonthlyRow,
    Projection,
    ProjectionStatus,
    ProjectionSummary,
    Provenance,
    QualitySummary,
    ReportConfig,
    ReportWindow,
    ShareIndicator,
    SizeBandTarget,
    Term,
)
from app.registry.models import Park

#: 1 tce = 29.3076 GJ (GB/T 2589 standard coal: 7000 kcal/kg)
GJ_PER_TCE = 29.3076

PROJECTION_METHOD: dict[Lang, str] = {
    "en": (
        "Year-end projection: each month with data is scaled to a full month by its coverage "
        "((measured + estimated intervals) / expected intervals); the scaled monthly sums are "
        "extrapolated linearly over the year (x year length / total length of those months). "
        "Ratios are re-derived from the projected numerators and denominators. With data for "
        "less than 1/12 of the year's device-intervals (a month's worth) the projection says "
        "insufficient data."
    ),
    "zh": (
        "年末预测：有数据的月份按其数据覆盖率（（实测 + 估算区间）/ 应有区间）折算为整月，"
        "再按时间长度线性外推至全年（× 全年时长 / 这些月份的总时长）；"
        "比值由预测的分子和分母重新计算。"
        "全年应有区间中有数据者不足 1/12（一个月）时，预测显示数据不足。"
    ),
}


#: Below this share of the year's expected device-intervals covered by data (measured or
#: estimated), the year-end projection says "insufficient data" instead of a value and a
#: pass/fail (docs/evaluation.md): a month's worth of the year (1/12) is the least a linear
#: extrapolation of an annual indicator is worth showing.
MIN_PROJECTION_COVERAGE = 1 / 12


@dataclass(frozen=True, slots=True)
class SizeBand:
    """Core-indicator threshold for parks of `min_tce` ≤ annual energy < `max_tce`."""

    min_tce: float
    max_tce: float | None
    max_tco2_per_tce: float

    def contains(self, tce: float) -> bool:
        return tce >= self.min_tce and (self.max_tce is None or tce < self.max_tce)

    def as_target(self) -> SizeBandTarget:
        """The band as the report shows it."""
        return SizeBandTarget(
            min_tce=self.min_tce, max_tce=self.max_tce, max_tco2_per_tce=self.max_tco2_per_tce
        )


#: docs/accounting.md: ≤ 0.2 tCO2/tce for 200k–1M tce/year, ≤ 0.3 above 1M tce/year
DEFAULT_SIZE_BANDS = (
    SizeBand(200_000.0, 1_000_000.0, 0.2),
    SizeBand(1_000_000.0, None, 0.3),
)


@dataclass(frozen=True, slots=True)
class EvaluationConfig:
    """Thresholds and targets. Guiding targets are not confirmed from the official annex."""

    size_bands: tuple[SizeBand, ...] = DEFAULT_SIZE_BANDS
    clean_energy_share_min: float | None = 0.90
    green_electricity_share_min: float | None = None
    waste_heat_utilisation_min: float | None = 0.50
    #: whether the guiding targets above were checked against the official annex
    guiding_targets_confirmed: bool = False
    notes: tuple[str, ...] = field(default=())


DEFAULT_CONFIG = EvaluationConfig()

NAMES: dict[str, dict[Lang, str]] = {
    "carbon_per_energy": {
        "zh": "单位能耗碳排放",
        "en": "Carbon emissions per unit of energy",
    },
    "clean_energy_share": {"zh": "清洁能源消费占比", "en": "Clean-energy consumption share"},
    "green_electricity_share": {"zh": "绿色电力消费占比", "en": "Green-electricity share"},
    "waste_heat_utilisation": {"zh": "余热利用率", "en": "Waste-heat utilisation"},
}


@dataclass(frozen=True, slots=True)
class _Month:
    label: str
    start: datetime
    end: datetime
    length_s: float
    fields: BalanceFields
    coverage: float | None
    q: dict[str, float]


def _coverage(f: BalanceFields) -> float | None:
    if not f.expected_intervals:
        return None
    return min(1.0, (f.measured_intervals + f.estimated_intervals) / f.expected_intervals)


def _quantities(f: BalanceFields, fs: FactorSet) -> dict[str, float]:
    """Additive quantities behind the indicators (energy in tce, heat in GJ, CO2 in kg)."""
    elec_kgce = fs.electricity_coal.value
    elec_tce = f.consumption_kwh * elec_kgce / 1000.0
    heat_tce = f.heat_purchased_gj * fs.heat_coal.value / 1000.0
    # Fuels are not itemised in the balance: their standard coal is what is left of energy_tce.
    fuel_tce = max(0.0, f.energy_tce - elec_tce - heat_tce)
    return {
        "energy_tce": f.energy_tce,
        "net_kg": f.net_kg,
        "net_location_kg": f.net_location_kg,
        "gross_kg": f.net_kg + f.offsets_kg,
        "offsets_kg": f.offsets_kg,
        "consumption_kwh": f.consumption_kwh,
        "green_physical_kwh": f.green_physical_kwh,
        "green_market_kwh": f.green_market_kwh,
        "clean_market_tce": f.green_market_kwh * elec_kgce / 1000.0,
        "clean_physical_tce": f.green_physical_kwh * elec_kgce / 1000.0,
        "heat_recovered_gj": f.heat_recovered_gj,
        "heat_purchased_gj": f.heat_purchased_gj,
        "fuel_heat_gj": fuel_tce * GJ_PER_TCE,
        "heat_total_gj": f.heat_recovered_gj + f.heat_purchased_gj + fuel_tce * GJ_PER_TCE,
    }


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 1e-12:
        return None
    return num / den


def _passes(value: float | None, target: float | None, comparison: Comparison) -> bool | None:
    if value is None or target is None:
        return None
    return value <= target if comparison == "<=" else value >= target


def _band_for(tce: float | None, bands: tuple[SizeBand, ...]) -> tuple[SizeBand | None, bool]:
    """The band of a park of `tce` per year, and whether it lies inside the programme's bands.

    Below every band the strictest (lowest) band is applied; that is flagged, not hidden.
    """
    if not bands:
        return None, False
    if tce is not None:
        for band in bands:
            if band.contains(tce):
                return band, True
    return min(bands, key=lambda b: b.min_tce), False


class _Window:
    """The months of the data window and sums/projections over them."""

    def __init__(self, months: list[_Month], year_length_s: float) -> None:
        self.months = months
        self.data = [m for m in months if m.coverage is not None and m.coverage > 0]
        self.year_length_s = year_length_s

    def total(self, key: str) -> float:
        return sum(m.q[key] for m in self.months)

    def year_coverage(self) -> float | None:
        """Share of the whole year's expected device-intervals that have data."""
        expected = sum(m.fields.expected_intervals for m in self.months)
        span = sum(m.length_s for m in self.months)
        if not expected or span <= 0:
            return None
        covered = sum(
            m.fields.measured_intervals + m.fields.estimated_intervals for m in self.months
        )
        return min(1.0, covered / (expected * self.year_length_s / span))

    def sufficient(self) -> bool:
        coverage = self.year_coverage()
        return coverage is not None and coverage >= MIN_PROJECTION_COVERAGE

    def projected(self, key: str) -> float | None:
        if not self.data or not self.sufficient():
            return None
        span = sum(m.length_s for m in self.data)
        scaled = sum(m.q[key] / m.coverage for m in self.data if m.coverage)
        return scaled * self.year_length_s / span

    def status(self) -> ProjectionStatus:
        return "projected" if self.sufficient() else "insufficient_data"

    def months_with(self, den_key: str) -> list[str]:
        return [m.label for m in self.data if m.q[den_key] > 1e-12]


def _completeness(months: list[_Month]) -> float | None:
    expected = sum(m.fields.expected_intervals for m in months)
    measured = sum(m.fields.measured_intervals for m in months)
    return min(1.0, measured / expected) if expected else None


def _indicator(
    key: str,
    w: _Window,
    num: str,
    den: str,
    *,
    unit: str,
    target: float | None,
    comparison: Comparison,
    target_confirmed: bool,
    scale: float = 1.0,
) -> Indicator:
    value = _ratio(w.total(num) * scale, w.total(den))
    pnum, pden = w.projected(num), w.projected(den)
    projected = _ratio(None if pnum is None else pnum * scale, pden)
    return Indicator(
        id=key,
        name=dict(NAMES[key]),
        unit=unit,
        value=value,
        target=target,
        comparison=comparison,
        passes=_passes(value, target, comparison),
        target_confirmed=target_confirmed,
        months=w.months_with(den),
        completeness=_completeness(w.months),
        projection=Projection(
            value=projected,
            passes=_passes(projected, target, comparison),
            status=w.status(),
        ),
        numerator=Term(key=num, value=w.total(num), projected=pnum),
        denominator=Term(key=den, value=w.total(den), projected=pden),
    )


def canonical_json(doc: Any) -> bytes:
    """The bytes the report hash is taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def report_hash(doc: Mapping[str, Any] | EvaluationReport) -> str:
    """sha256 (hex) of the canonical JSON of the report without its `hash` field."""
    if isinstance(doc, EvaluationReport):
        body = doc.model_dump(mode="json", exclude={"hash"})
    else:
        body = {k: v for k, v in doc.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _months(result: BalanceResult, fs: FactorSet) -> list[_Month]:
    return [
        _Month(
            label=b.start.strftime("%Y-%m"),
            start=b.start,
            end=b.end,
            length_s=(b.end - b.start).total_seconds(),
            fields=b.fields,
            coverage=_coverage(b.fields),
            q=_quantities(b.fields, fs),
        )
        for b in result.buckets
    ]


def _warnings(
    result: BalanceResult, w: _Window, band: SizeBand | None, in_bands: bool
) -> list[str]:
    """What the reader must know before trusting the figures, in a fixed order."""
    warnings = list(result.warnings)
    if band is not None and not in_bands:
        warnings.append(
            "projected annual energy is outside the programme's size bands;"
            f" the strictest threshold ({band.max_tco2_per_tce} tCO2/tce) is applied"
        )
    if not w.data:
        warnings.append("no month of the year has data")
    if not w.sufficient():
        warnings.append(
            "insufficient data for a year-end projection: "
            f"{(w.year_coverage() or 0.0) * 100:.1f} % of the year's device-intervals have data"
            f" (a projection needs {MIN_PROJECTION_COVERAGE * 100:.1f} %, a month's worth)"
        )
    quality = result.total.quality
    repaired = [
        f"{name} {quality[name]['intervals']} ({', '.join(quality[name]['devices'])})"
        for name in QUALITY_CATEGORIES
        if quality.get(name, {}).get("intervals")
    ]
    if repaired:
        warnings.append("figures rest on repaired data: " + "; ".join(repaired) + " intervals")
    return warnings


def _core(w: _Window, band: SizeBand | None, in_bands: bool) -> CoreIndicator:
    """Carbon per unit of energy: market-based, its location-based twin, offsets, band."""
    threshold = None if band is None else band.max_tco2_per_tce
    market, location = (
        _indicator(
            "carbon_per_energy",
            w,
            num,
            "energy_tce",
            unit="tCO2/tce",
            target=threshold,
            comparison="<=",
            target_confirmed=True,
            scale=1 / 1000.0,
        )
        for num in ("net_kg", "net_location_kg")
    )
    gross_kg = w.total("gross_kg")
    return CoreIndicator(
        **dict(market),
        view="market",
        location_based=LocationView(
            value=location.value, passes=location.passes, projection=location.projection
        ),
        before_offsets=_ratio(gross_kg / 1000.0, w.total("energy_tce")),
        offsets_share=_ratio(w.total("offsets_kg"), gross_kg) if gross_kg > 0 else None,
        size_band=None if band is None else band.as_target(),
        size_in_programme_bands=in_bands,
    )


def _guiding(w: _Window, config: EvaluationConfig) -> list[ShareIndicator | HeatIndicator]:
    """Clean-energy share, green-electricity share and waste-heat utilisation."""
    confirmed = config.guiding_targets_confirmed
    clean = _indicator(
        "clean_energy_share",
        w,
        "clean_market_tce",
        "energy_tce",
        unit="ratio",
        target=config.clean_energy_share_min,
        comparison=">=",
        target_confirmed=confirmed,
    )
    green = _indicator(
        "green_electricity_share",
        w,
        "green_market_kwh",
        "consumption_kwh",
        unit="ratio",
        target=config.green_electricity_share_min,
        comparison=">=",
        target_confirmed=confirmed,
    )
    heat = _indicator(
        "waste_heat_utilisation",
        w,
        "heat_recovered_gj",
        "heat_total_gj",
        unit="ratio",
        target=config.waste_heat_utilisation_min,
        comparison=">=",
        target_confirmed=confirmed,
    )
    return [
        ShareIndicator(
            **dict(clean), physical=_ratio(w.total("clean_physical_tce"), w.total("energy_tce"))
        ),
        ShareIndicator(
            **dict(green),
            physical=_ratio(w.total("green_physical_kwh"), w.total("consumption_kwh")),
        ),
        HeatIndicator(
            **dict(heat),
            heat_purchased_gj=w.total("heat_purchased_gj"),
            fuel_heat_gj=w.total("fuel_heat_gj"),
        ),
    ]


def _monthly_row(m: _Month) -> MonthlyRow:
    f = m.fields
    return MonthlyRow(
        month=m.label,
        start=m.start.isoformat(),
        end=m.end.isoformat(),
        consumption_kwh=f.consumption_kwh,
        green_market_kwh=f.green_market_kwh,
        energy_tce=f.energy_tce,
        net_kg=f.net_kg,
        net_location_kg=f.net_location_kg,
        tco2_per_tce=f.tco2_per_tce,
        heat_recovered_gj=f.heat_recovered_gj,
        completeness=f.completeness,
        coverage=m.coverage,
        quality=QualitySummary.model_validate(f.quality),
    )


def _provenance(registry_version: int, audit_head: tuple[int, str] | None) -> Provenance:
    anchor = None
    if audit_head is not None:
        seq, head = audit_head
        anchor = AuditAnchor(seq=seq, hash=head, anchor=f"{seq}:{head}")
    return Provenance(registry_version=registry_version, audit_head=anchor)


def build_report(
    result: BalanceResult,
    park: Park,
    fs: FactorSet,
    *,
    year: int,
    year_start: datetime,
    year_end: datetime,
    config: EvaluationConfig = DEFAULT_CONFIG,
    registry_version: int = 0,
    audit_head: tuple[int, str] | None = None,
) -> EvaluationReport:
    """The evaluation report of `park` for `year` from a monthly (`1mo`) balance of the year
    so far (`result` covers [year_start, min(year_end, now))), with its hash.

    `registry_version` and `audit_head` (seq, hash of the audit log's last entry) go into the
    report as `provenance`: the head printed in every report is an anchor an auditor can
    check the log against later (`lingtan audit verify --anchor SEQ:HASH`)."""
    months = _months(result, fs)
    w = _Window(months, (year_end - year_start).total_seconds())
    energy_proj = w.projected("energy_tce")
    band, in_bands = _band_for(energy_proj, config.size_bands)
    window_end = months[-1].end if months else year_start
    report = EvaluationReport(
        park=park.id,
        park_name=park.name,
        year=year,
        factor_set=FactorSetRef(name=fs.name, year=fs.year, description=fs.description),
        window=ReportWindow(
            start=year_start.isoformat(),
            end=window_end.isoformat(),
            year_end=year_end.isoformat(),
            full_year=window_end >= year_end,
        ),
        completeness=_completeness(months),
        months_with_data=[m.label for m in w.data],
        projection_method=dict(PROJECTION_METHOD),
        projection=ProjectionSummary(
            status=w.status(),
            year_coverage=w.year_coverage(),
            min_coverage=MIN_PROJECTION_COVERAGE,
        ),
        quality=QualitySummary.model_validate(result.total.quality),
        energy_tce=w.total("energy_tce"),
        energy_tce_projected=energy_proj,
        core=_core(w, band, in_bands),
        guiding=_guiding(w, config),
        config=ReportConfig(
            size_bands=[b.as_target() for b in config.size_bands],
            guiding_targets_confirmed=config.guiding_targets_confirmed,
        ),
        monthly=[_monthly_row(m) for m in months],
        warnings=_warnings(result, w, band, in_bands) + list(config.notes),
        provenance=_provenance(registry_version, audit_head),
        hash="",
    )
    return report.model_copy(update={"hash": report_hash(report)})
