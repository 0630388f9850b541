"""Heat: space-heating demand from outdoor temperature, heat pump COP, boiler fuel, DH temps."""

from __future__ import annotations

#: Heating balance point and design temperature (Shenyang design −16.9 °C, rounded down).
BALANCE_POINT_C = 16.0
DESIGN_TEMP_C = -22.0
#: Domestic hot water and process heat, as a share of design heat load (all year).
BASE_HEAT_FRACTION = 0.06

#: Lower heating values, kWh per unit of the fuel counter, and the counter each fuel uses.
FUEL_COUNTER = {
    "natural_gas": ("gas_m3", 9.97),  # 35.9 MJ/m³
    "coal": ("fuel_kg", 5.8),  # 20.9 MJ/kg raw coal
    "diesel": ("fuel_kg", 11.86),  # 42.7 MJ/kg
    "lpg": ("fuel_kg", 12.8),  # 46 MJ/kg
    "biomass": ("fuel_kg", 4.2),  # 15 MJ/kg pellets
}
BOILER_EFFICIENCY = 0.92
KWH_PER_GJ = 1e6 / 3600.0
#: Water: kWh per m³ per kelvin.
WATER_KWH_PER_M3K = 1.163


def heat_demand_fraction(outdoor_c: float) -> float:
    """Heat demand as a fraction of design load: linear in degree-hours below balance point."""
    space = max(0.0, BALANCE_POINT_C - outdoor_c) / (BALANCE_POINT_C - DESIGN_TEMP_C)
    return BASE_HEAT_FRACTION + (1.0 - BASE_HEAT_FRACTION) * space


def heat_pump_cop(outdoor_c: float, supply_c: float = 45.0) -> float:
    """Air-source COP: 45 % of Carnot between outdoor air and supply water, within [1.5, 5]."""
    lift = max(supply_c - outdoor_c, 5.0)
    return min(5.0, max(1.5, 0.45 * (supply_c + 273.15) / lift))


def heat_pump_capacity_fraction(outdoor_c: float) -> float:
    """Air-source units lose capacity in the cold: 100 % at +7 °C, 55 % at −25 °C."""
    return min(1.0, max(0.55, 1.0 - (7.0 - outdoor_c) * 0.45 / 32.0))


def district_supply_temp_c(outdoor_c: float) -> float:
    """Heating curve of a district network: 95 °C at −20 °C outdoors, 60 °C from +10 °C."""
    return min(95.0, max(60.0, 60.0 + (10.0 - outdoor_c) * 35.0 / 30.0))


def return_temp_c(supply_c: float, load_fraction: float) -> float:
    """Return temperature: the more heat drawn, the wider the spread (10 K to 30 K)."""
    return supply_c - (10.0 + 20.0 * min(max(load_fraction, 0.0), 1.0))


def flow_m3h(heat_kw: float, supply_c: float, return_c: float) -> float:
    return heat_kw / (WATER_KWH_PER_M3K * max(supply_c - return_c, 1.0))
