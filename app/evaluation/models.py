"""The evaluation report as typed models: what `build_report` returns and every renderer reads.

The JSON of the API is `EvaluationReport.model_dump(mode="json")`: field order is key order,
a Python name that is a keyword (`passes`) is served under its JSON key (`pass`). Energy in
tce (standard coal), heat in GJ, electricity in kWh, CO2 in kg unless the name says t;
ratios are fractions (0.25 = 25 %), never percentages; times are ISO 8601 in the park's zone.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

Lang = Literal["zh", "en"]
#: "projected", or "insufficient_data" when under `min_coverage` of the year has data
ProjectionStatus = Literal["projected", "insufficient_data"]
#: "<=": the value passes at or below the target (carbon); ">=": at or above it (shares)
Comparison = Literal["<=", ">="]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", serialize_by_alias=True)


def _verdict() -> Any:
    """`passes` in Python, `pass` in JSON: True passes, False fails, None cannot tell."""
    return Field(validation_alias=AliasChoices("passes", "pass"), serialization_alias="pass")


class Projection(_Section):
    """An indicator's year-end projection and its verdict."""

    #: the ratio re-derived from the projected numerator and denominator; None without data
    value: float | None
    #: value against the target; None without a value or a target
    passes: bool | None = _verdict()
    status: ProjectionStatus


class Term(_Section):
    """A numerator or denominator of an indicator: year to date and projected to year end."""

    #: the additive quantity, e.g. "net_kg", "energy_tce", "green_market_kwh"
    key: str
    value: float
    projected: float | None


class Indicator(_Section):
    """One indicator over the year so far: value, target, verdict, projection."""

    #: "carbon_per_energy", "clean_energy_share", ...
    id: str
    name: dict[Lang, str]
    #: "tCO2/tce" or "ratio" (a fraction)
    unit: str
    value: float | None
    target: float | None
    comparison: Comparison
    passes: bool | None = _verdict()
    #: whether the target was checked against the programme's official annex
    target_confirmed: bool
    #: months with a non-zero denominator, "YYYY-MM"
    months: list[str]
    #: measured / expected device-intervals over the window; None when none were expected
    completeness: float | None
    projection: Projection
    numerator: Term
    denominator: Term


class LocationView(_Section):
    """The core indicator with location-based emissions (grid average factor)."""

    value: float | None
    passes: bool | None = _verdict()
    projection: Projection


class SizeBandTarget(_Section):
    """A size band of the core indicator: parks of min_tce ≤ annual energy < max_tce."""

    min_tce: float
    #: None: no upper bound
    max_tce: float | None
    max_tco2_per_tce: float


class CoreIndicator(Indicator):
    """Carbon per unit of energy (tCO2/tce, market-based), with its location-based twin."""

    #: "market": `value` nets certificates (market-based scope 2)
    view: Literal["market"]
    location_based: LocationView
    #: tCO2/tce before offsets are deducted
    before_offsets: float | None
    #: offsets / gross emissions; None without gross emissions
    offsets_share: float | None
    #: the band whose threshold is the target; None when no band is configured
    size_band: SizeBandTarget | None
    #: False: projected energy lies outside every band, the strictest one applies
    size_in_programme_bands: bool


class ShareIndicator(Indicator):
    """A guiding share (clean energy, green electricity) with its physical counterpart."""

    #: the same share counting only physically delivered green electricity (no certificates)
    physical: float | None


class HeatIndicator(Indicator):
    """Waste-heat utilisation, with the heat it is measured against."""

    heat_purchased_gj: float
    #: the heat of the fuels burnt: their standard coal × 29.3076 GJ/tce
    fuel_heat_gj: float


class FactorSetRef(_Section):
    """The emission/conversion factor set the report was computed with."""

    name: str
    year: int
    description: str


class ReportWindow(_Section):
    """The data window: the year's start to the end of its last month so far."""

    start: str
    end: str
    year_end: str
    #: whether the window reaches the end of the year
    full_year: bool


class ProjectionSummary(_Section):
    """Whether the year-end projection is shown, and the coverage it rests on."""

    status: ProjectionStatus
    #: share of the year's expected device-intervals with data (measured or estimated)
    year_coverage: float | None
    #: the least year_coverage a projection needs (a month's worth, 1/12)
    min_coverage: float


class QualityCategory(_Section):
    """Device-intervals of one quality category and the devices behind them."""

    intervals: int
    devices: list[str]


class QualitySummary(_Section):
    """What stands behind the figures (docs/intervals.md, "Quality"), every category."""

    estimated: QualityCategory
    glitch: QualityCategory
    implausible: QualityCategory
    conflict: QualityCategory
    reset: QualityCategory
    #: whether any figure rests on an interval of the categories above
    repaired: bool


class ReportConfig(_Section):
    """The thresholds the report was evaluated against."""

    size_bands: list[SizeBandTarget]
    guiding_targets_confirmed: bool


class MonthlyRow(_Section):
    """One month of the year (park local) as the balance has it."""

    month: str
    start: str
    end: str
    consumption_kwh: float
    green_market_kwh: float
    energy_tce: float
    net_kg: float
    net_location_kg: float
    tco2_per_tce: float | None
    heat_recovered_gj: float
    completeness: float | None
    #: (measured + estimated) / expected device-intervals; None when none were expected
    coverage: float | None
    quality: QualitySummary


class AuditAnchor(_Section):
    """The audit log's head when the report was built (`lingtan audit verify --anchor`)."""

    seq: int
    hash: str
    #: "SEQ:HASH"
    anchor: str


class Provenance(_Section):
    """What the report was computed against."""

    registry_version: int
    audit_head: AuditAnchor | None


class EvaluationReport(_Section):
    """The zero-carbon park evaluation of a park for a year so far (docs/evaluation.md)."""

    park: str
    park_name: str | None
    year: int
    factor_set: FactorSetRef
    window: ReportWindow
    completeness: float | None
    months_with_data: list[str]
    #: how the projection is made, per language
    projection_method: dict[Lang, str]
    projection: ProjectionSummary
    quality: QualitySummary
    #: year to date
    energy_tce: float
    energy_tce_projected: float | None
    core: CoreIndicator
    #: clean-energy share, green-electricity share, waste-heat utilisation, in that order
    guiding: list[ShareIndicator | HeatIndicator]
    config: ReportConfig
    monthly: list[MonthlyRow]
    warnings: list[str]
    provenance: Provenance
    #: sha256 (hex) of the canonical JSON of every other field (`report_hash`)
    hash: str

    def __getitem__(self, key: str) -> Any:
        """The JSON value of one top-level key, as the API serves it: a read-only view for
        callers that knew the report as a dict (`report["core"]["pass"]`)."""
        if key not in type(self).model_fields:
            raise KeyError(key)
        return self.model_dump(mode="json", include={key})[key]
