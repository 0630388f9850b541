"""Versioned emission and standard-coal factor sets (docs/accounting.md §8), units and sources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from math import isfinite
from types import MappingProxyType

#: 1 GJ = 277.777… kWh (exact: 1 kWh = 3.6 MJ).
KWH_PER_GJ = 1000.0 / 3.6
GJ_PER_KWH = 0.0036

_MEE_2023 = (
    "MEE & NBS, 关于发布2023年电力二氧化碳排放因子的公告 (published 2026-01); "
    "values as reported by the press (光明日报), not checked against the annex here"
)
_MEE_2022 = (
    "MEE & NBS, 关于发布2022年电力二氧化碳排放因子的公告 (published 2024-12-26); "
    "values as reported by the press, not checked against the annex here"
)
_GBT32150 = (
    "derived from GB/T 32150-2015 appendix defaults (NCV × carbon content × oxidation × 44/12); "
    "not confirmed against the official text here"
)
_GBT2589 = (
    "GB/T 2589-2020 appendix (standard-coal reference coefficients),"
    " as given in docs/accounting.md §8"
)
_H2_STD = (
    "T/CAB 0078-2020 (China Hydrogen Alliance) class threshold used as a conservative "
    "upper bound; NOT an official emission factor, not confirmed from the official text"
)


@dataclass(frozen=True, slots=True)
class Factor:
    """One factor value with its unit and provenance."""

    value: float
    unit: str
    source: str
    year: int


@dataclass(frozen=True, slots=True)
class FuelFactors:
    """Factors for one fuel measured in one counter (`gas_m3`, `fuel_kg`, `fuel_l`)."""

    co2: Factor  # kgCO2 per unit of the counter
    coal: Factor  # kgce per unit of the counter


@dataclass(frozen=True, slots=True)
class FactorSet:
    """A named, versioned set of factors. Immutable: a change is a new set with a new name."""

    name: str
    year: int
    description: str
    #: grid region → location-based grid factor (kgCO2/kWh)
    grid: Mapping[str, Factor]
    #: national average excluding market-traded non-fossil electricity (kgCO2/kWh)
    residual: Factor
    #: (fuel, counter) → factors, e.g. ("natural_gas", "gas_m3")
    fuels: Mapping[tuple[str, str], FuelFactors]
    #: purchased heat, kgCO2/GJ
    heat: Factor
    #: hydrogen class → kgCO2/kgH2
    hydrogen: Mapping[str, Factor]
    #: standard coal of electricity, kgce/kWh (calorific equivalent)
    electricity_coal: Factor
    #: standard coal of heat, kgce/GJ
    heat_coal: Factor
    extra: Mapping[str, Factor] = field(default_factory=dict)

    def grid_factor(self, region: str) -> Factor:
        """Location-based grid factor of `region`; unknown region → ValueError."""
        try:
            return self.grid[region]
        except KeyError:
            known = ", ".join(sorted(self.grid))
            raise ValueError(
                f"factor set {self.name!r} has no grid factor for region {region!r} "
                f"(known: {known})"
            ) from None

    def fuel_factors(self, fuel: str, counter: str) -> FuelFactors:
        try:
            return self.fuels[(fuel, counter)]
        except KeyError:
            known = ", ".join(f"{f}/{c}" for f, c in sorted(self.fuels))
            raise ValueError(
                f"factor set {self.name!r} has no factor for fuel {fuel!r} measured as "
                f"{counter!r} (known: {known})"
            ) from None

    def hydrogen_factor(self, h2_class: str) -> Factor:
        try:
            return self.hydrogen[h2_class]
        except KeyError:
            raise ValueError(
                f"factor set {self.name!r} has no hydrogen factor for class {h2_class!r}"
            ) from None

    def with_grid_region(self, region: str, factor: Factor, name: str) -> FactorSet:
        """A new set (new name) with one grid region added or replaced."""
        grid = dict(self.grid)
        grid[region] = factor
        return validate_factor_set(replace(self, name=name, grid=MappingProxyType(grid)))


def _f(value: float, unit: str, source: str, year: int) -> Factor:
    return Factor(value, unit, source, year)


_KGCE_SOURCE = _GBT2589


def _fuels(year: int) -> dict[tuple[str, str], FuelFactors]:
    ce = "kgce"
    diesel_density = 0.84  # kg/L, typical for GB 19147 diesel; assumption, not official
    lpg_density = 0.54  # kg/L at ~15 °C; assumption, not official
    per_l_diesel = f"× assumed {diesel_density} kg/L"
    per_l_lpg = f"× assumed {lpg_density} kg/L"
    return {
        ("natural_gas", "gas_m3"): FuelFactors(
            _f(2.162, "kgCO2/m3", "docs/accounting.md §8 (≈2.162); " + _GBT32150, year),
            _f(1.2143, f"{ce}/m3", _KGCE_SOURCE + " (gas-field gas; oilfield gas 1.3300)", year),
        ),
        ("coal", "fuel_kg"): FuelFactors(
            _f(1.9003, "kgCO2/kg", "raw coal; " + _GBT32150, year),
            _f(0.7143, f"{ce}/kg", _KGCE_SOURCE + " (raw coal)", year),
        ),
        ("diesel", "fuel_kg"): FuelFactors(
            _f(3.0959, "kgCO2/kg", _GBT32150, year),
            _f(1.4571, f"{ce}/kg", _KGCE_SOURCE, year),
        ),
        ("diesel", "fuel_l"): FuelFactors(
            _f(
                3.0959 * diesel_density,
                "kgCO2/L",
                f"{_GBT32150}; {per_l_diesel}",
                year,
            ),
            _f(
                1.4571 * diesel_density,
                f"{ce}/L",
                f"{_KGCE_SOURCE}; {per_l_diesel}",
                year,
            ),
        ),
        ("lpg", "fuel_kg"): FuelFactors(
            _f(3.1013, "kgCO2/kg", _GBT32150, year),
            _f(1.7143, f"{ce}/kg", "GB/T 2589 appendix LPG 1.7143; not confirmed here", year),
        ),
        ("lpg", "fuel_l"): FuelFactors(
            _f(3.1013 * lpg_density, "kgCO2/L", f"{_GBT32150}; {per_l_lpg}", year),
            _f(
                1.7143 * lpg_density,
                f"{ce}/L",
                f"GB/T 2589 LPG; {per_l_lpg}",
                year,
            ),
        ),
        ("biomass", "fuel_kg"): FuelFactors(
            _f(
                0.0,
                "kgCO2/kg",
                "biogenic CO2 reported as zero (IPCC 2006 convention); CH4/N2O not counted",
                year,
            ),
            _f(
                0.5,
                f"{ce}/kg",
                "typical straw/wood pellets ~14.6 MJ/kg; NOT an official "
                "coefficient, configure per fuel analysis",
                year,
            ),
        ),
    }


def _hydrogen(year: int) -> dict[str, Factor]:
    u = "kgCO2/kgH2"
    return {
        "grey": _f(
            29.02,
            u,
            "coal-gasification baseline used by T/CAB 0078-2020; NOT confirmed "
            "from the official text; configure from supplier data",
            year,
        ),
        "low_carbon": _f(14.51, u, _H2_STD + " (low-carbon threshold)", year),
        "clean": _f(4.9, u, _H2_STD + " (clean threshold)", year),
        "renewable": _f(4.9, u, _H2_STD + " (renewable threshold)", year),
    }


def _common(
    name: str, year: int, description: str, grid: dict[str, Factor], residual: Factor
) -> FactorSet:
    return FactorSet(
        name=name,
        year=year,
        description=description,
        grid=MappingProxyType(grid),
        residual=residual,
        fuels=MappingProxyType(_fuels(year)),
        heat=_f(
            110.0,
            "kgCO2/GJ",
            "docs/accounting.md §8 (0.11 tCO2/GJ, MEE accounting-guideline default for"
            " purchased heat)",
            year,
        ),
        hydrogen=MappingProxyType(_hydrogen(year)),
        electricity_coal=_f(0.1229, "kgce/kWh", _KGCE_SOURCE + " (calorific equivalent)", year),
        heat_coal=_f(34.1, "kgce/GJ", _KGCE_SOURCE + " (0.0341 tce/GJ)", year),
    )


def _grid(values: dict[str, float], source: str, year: int) -> dict[str, Factor]:
    return {k: _f(v, "kgCO2/kWh", source, year) for k, v in values.items()}


CN_2023 = _common(
    "cn-2023",
    2023,
    "China, 2023 electricity factors (MEE/NBS), GB/T 32150 fuels, GB/T 2589 standard coal",
    _grid(
        {
            "national": 0.5306,
            "north": 0.6361,
            "northeast": 0.5122,
            "east": 0.5500,
            "central": 0.5271,
            "northwest": 0.5543,
            "south": 0.4042,
            "southwest": 0.2472,
        },
        _MEE_2023,
        2023,
    ),
    _f(0.6096, "kgCO2/kWh", "national excl. market-traded non-fossil; " + _MEE_2023, 2023),
)

CN_2022 = _common(
    "cn-2022",
    2022,
    "China, 2022 electricity factors (MEE/NBS), GB/T 32150 fuels, GB/T 2589 standard coal",
    _grid(
        {
            "national": 0.5366,
            "north": 0.6776,
            "northeast": 0.5564,
            "east": 0.5617,
            "central": 0.5395,
            "northwest": 0.5857,
            "south": 0.3869,
            "southwest": 0.2268,
        },
        _MEE_2022,
        2022,
    ),
    _f(0.5856, "kgCO2/kWh", "national excl. market-traded non-fossil; " + _MEE_2022, 2022),
)

#: Built-in sets by name. User sets are kept by the caller (see `register_factor_set`).
BUILTIN_FACTOR_SETS: Mapping[str, FactorSet] = MappingProxyType(
    {CN_2023.name: CN_2023, CN_2022.name: CN_2022}
)
DEFAULT_FACTOR_SET = "cn-2023"


def _check(factor: Factor, what: str, *, allow_zero: bool = True) -> None:
    if not isinstance(factor, Factor):
        raise ValueError(f"{what}: expected a Factor, got {type(factor).__name__}")
    if not isfinite(factor.value) or factor.value < 0 or (not allow_zero and factor.value == 0):
        raise ValueError(f"{what}: value must be a finite number ≥ 0, got {factor.value!r}")
    if not factor.unit.strip():
        raise ValueError(f"{what}: a unit is required")
    if not factor.source.strip():
        raise ValueError(f"{what}: a source is required (say 'not confirmed' if it is not)")
    if not 1990 <= factor.year <= 2100:
        raise ValueError(f"{what}: implausible year {factor.year}")


def validate_factor_set(fs: FactorSet) -> FactorSet:
    """Check every factor of `fs` (finite, ≥ 0, unit, source, year); return it or raise."""
    if not fs.name.strip() or len(fs.name) > 64:
        raise ValueError("a factor set needs a name of 1–64 characters")
    if not fs.grid:
        raise ValueError("a factor set needs at least one grid region")
    for region, factor in fs.grid.items():
        _check(factor, f"grid[{region}]")
    _check(fs.residual, "residual")
    for (fuel, counter), ff in fs.fuels.items():
        if counter not in ("gas_m3", "fuel_kg", "fuel_l"):
            raise ValueError(f"fuel {fuel}: unknown counter {counter!r}")
        _check(ff.co2, f"fuels[{fuel}/{counter}].co2")
        _check(ff.coal, f"fuels[{fuel}/{counter}].coal")
    _check(fs.heat, "heat")
    for cls, factor in fs.hydrogen.items():
        _check(factor, f"hydrogen[{cls}]")
    _check(fs.electricity_coal, "electricity_coal", allow_zero=False)
    _check(fs.heat_coal, "heat_coal")
    for key, factor in fs.extra.items():
        _check(factor, f"extra[{key}]")
    return fs


def register_factor_set(known: Mapping[str, FactorSet], new: FactorSet) -> dict[str, FactorSet]:
    """Validate `new` and return a new name → set mapping including it.

    Pure: persisting it (and auditing the change) is the caller's job. A name already in use
    is refused, so a past report's factor set can never change under it.
    """
    validate_factor_set(new)
    if new.name in known or new.name in BUILTIN_FACTOR_SETS:
        raise ValueError(f"factor set {new.name!r} already exists; register under a new name")
    result = dict(known)
    result[new.name] = new
    return result


def get_factor_set(name: str, extra: Mapping[str, FactorSet] | None = None) -> FactorSet:
    """Look a set up among `extra` (user sets) and the built-ins; unknown → ValueError."""
    if extra and name in extra:
        return extra[name]
    try:
        return BUILTIN_FACTOR_SETS[name]
    except KeyError:
        known = sorted({*BUILTIN_FACTOR_SETS, *(extra or {})})
        raise ValueError(f"unknown factor set {name!r} (known: {', '.join(known)})") from None


def with_oilfield_gas(fs: FactorSet, name: str) -> FactorSet:
    """A copy of `fs` (under `name`) using 1.3300 kgce/m³ for natural gas (oilfield gas)."""
    fuels = dict(fs.fuels)
    gas = fuels[("natural_gas", "gas_m3")]
    fuels[("natural_gas", "gas_m3")] = replace(
        gas, coal=_f(1.3300, "kgce/m3", _KGCE_SOURCE + " (oilfield gas)", gas.coal.year)
    )
    return validate_factor_set(replace(fs, name=name, fuels=MappingProxyType(fuels)))
