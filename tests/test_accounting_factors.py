"""Factor sets: documented values, provenance on every value, registration, clear errors."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from app.accounting import (
    BUILTIN_FACTOR_SETS,
    CN_2022,
    CN_2023,
    Factor,
    get_factor_set,
    register_factor_set,
    validate_factor_set,
    with_oilfield_gas,
)
from app.accounting.factors import KWH_PER_GJ, FactorSet


def test_spec_values() -> None:
    assert CN_2023.grid_factor("national").value == 0.5306
    assert CN_2023.residual.value == 0.6096
    assert CN_2023.grid_factor("northeast").value == 0.5122
    assert CN_2022.grid_factor("national").value == 0.5366
    assert CN_2022.residual.value == 0.5856
    assert CN_2022.grid_factor("northeast").value == 0.5564
    for fs in (CN_2023, CN_2022):
        gas = fs.fuel_factors("natural_gas", "gas_m3")
        assert gas.co2.value == 2.162 and gas.coal.value == 1.2143
        assert fs.heat.value == 110.0  # 0.11 tCO2/GJ in kg
        assert fs.electricity_coal.value == 0.1229
        assert fs.heat_coal.value == 34.1  # 0.0341 tce/GJ in kgce
        assert fs.fuel_factors("coal", "fuel_kg").coal.value == 0.7143
        assert fs.fuel_factors("diesel", "fuel_kg").coal.value == 1.4571
    assert pytest.approx(277.7777778) == KWH_PER_GJ


def test_every_value_has_unit_source_and_year() -> None:
    for fs in BUILTIN_FACTOR_SETS.values():
        assert validate_factor_set(fs) is fs
        values = [
            *fs.grid.values(),
            fs.residual,
            fs.heat,
            *fs.hydrogen.values(),
            fs.electricity_coal,
            fs.heat_coal,
        ]
        for ff in fs.fuels.values():
            values += [ff.co2, ff.coal]
        for f in values:
            assert f.unit and f.source and f.year in (2022, 2023)
    # all hydrogen classes and fuels of the registry are covered
    assert set(CN_2023.hydrogen) == {"grey", "low_carbon", "clean", "renewable"}
    assert {fuel for fuel, _ in CN_2023.fuels} == {
        "natural_gas",
        "coal",
        "diesel",
        "lpg",
        "biomass",
    }
    # values not confirmed from an official text say so
    assert "not" in CN_2023.hydrogen["grey"].source.lower()


def test_unknown_region_and_set() -> None:
    with pytest.raises(ValueError, match=r"region 'mars'.*northeast"):
        CN_2023.grid_factor("mars")
    with pytest.raises(ValueError, match="unknown factor set"):
        get_factor_set("cn-1999")
    assert get_factor_set("cn-2022") is CN_2022


def test_register_user_set_is_pure_and_validated() -> None:
    mine = CN_2023.with_grid_region(
        "shenfu-pilot",
        Factor(0.45, "kgCO2/kWh", "provincial notice 2025 (example)", 2024),
        "shenfu-2024",
    )
    known: dict[str, FactorSet] = {}
    after = register_factor_set(known, mine)
    assert known == {} and after["shenfu-2024"] is mine
    assert get_factor_set("shenfu-2024", after).grid_factor("shenfu-pilot").value == 0.45
    with pytest.raises(ValueError, match="already exists"):
        register_factor_set(after, mine)
    with pytest.raises(ValueError, match="already exists"):
        register_factor_set({}, CN_2023)
    bad = replace(mine, name="bad", residual=Factor(float("nan"), "kgCO2/kWh", "x", 2024))
    with pytest.raises(ValueError, match="residual"):
        register_factor_set({}, bad)
    no_source = replace(
        mine,
        name="bad2",
        grid=MappingProxyType({"national": Factor(0.5, "kgCO2/kWh", " ", 2024)}),
    )
    with pytest.raises(ValueError, match="source"):
        validate_factor_set(no_source)


def test_oilfield_gas_variant() -> None:
    oil = with_oilfield_gas(CN_2023, "cn-2023-oilfield")
    assert oil.fuel_factors("natural_gas", "gas_m3").coal.value == 1.33
    assert CN_2023.fuel_factors("natural_gas", "gas_m3").coal.value == 1.2143
