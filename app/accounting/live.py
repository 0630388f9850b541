"""Live view: power by role, green share, carbon intensity, heat flows and the emission rate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.registry.models import SUBMETER_ROLES, Park, Role

from .factors import GJ_PER_KWH, FactorSet
from .flows import Supply, allocate
from .storage import StorageDeviceState


@dataclass(frozen=True, slots=True)
class LiveBalance:
    """Instantaneous balance (kW) and the green share / intensity of what the loads use now."""

    #: signed as published (docs/gateway-contract.md), summed per role
    power_by_role_kw: dict[str, float]
    grid_import_kw: float
    grid_export_kw: float
    renewable_kw: float
    green_direct_kw: float
    storage_charge_kw: float
    storage_discharge_kw: float
    load_kw: float  # what the park's loads draw now (I + D + G + S − X − C)
    green_share_physical: float | None
    green_share_market: float | None
    carbon_intensity_location_g_per_kwh: float | None
    carbon_intensity_market_g_per_kwh: float | None
    missing_devices: tuple[str, ...]


def live_balance(
    park: Park,
    power_kw: Mapping[str, float],
    storage_state: Mapping[str, StorageDeviceState],
    factor_set: FactorSet,
    certified_fraction: float = 0.0,
) -> LiveBalance:
    """Live balance from the latest `power_kw` per device id (sign per docs/gateway-contract.md).

    Grid: + import, − export. PV/wind/green_direct: + supply. Storage: + discharge, − charge.
    Sub-meters appear in `power_by_role_kw` only. The green share is that of the power the
    loads draw now, with storage provenance: a battery discharges at the green fraction it
    holds (`storage_state`, e.g. `BalanceResult.storage_state`). Intensities are the emissions
    of that grid-origin (non-green) power per kWh drawn: location uses the regional grid
    factor, market the residual factor on the share of imports not covered by certificates
    (`certified_fraction`, 0–1, of current imports; 0 live unless the caller knows better).
    Electricity only: fuels and heat are not in the live intensity.
    """
    by_role: dict[str, float] = {}
    imp = exp = gen = green_direct = charge = discharge = 0.0
    green_out_p = green_out_m = 0.0
    missing: list[str] = []
    for dev in park.devices:
        if dev.id not in power_kw:
            if dev.role not in SUBMETER_ROLES:
                missing.append(dev.id)
            continue
        p = power_kw[dev.id]
        by_role[dev.role.value] = by_role.get(dev.role.value, 0.0) + p
        if dev.role in SUBMETER_ROLES:
            continue
        if dev.role is Role.GRID:
            imp += max(0.0, p)
            exp += max(0.0, -p)
        elif dev.role in (Role.PV, Role.WIND):
            gen += max(0.0, p)  # night-time inverter draw (< 0) is ignored
        elif dev.role is Role.GREEN_DIRECT:
            green_direct += max(0.0, p)
        elif dev.role is Role.STORAGE:
            st = storage_state.get(dev.id, StorageDeviceState())
            if p >= 0:
                discharge += p
                green_out_p += p * st.green_fraction_physical
                green_out_m += p * st.green_fraction_market
            else:
                charge += -p
    certified = imp * min(1.0, max(0.0, certified_fraction))
    flows = allocate(
        Supply(imp, exp, gen, green_direct, certified), charge, discharge, green_out_p, green_out_m
    )
    load = flows.loads
    share_p = share_m = ci_loc = ci_mkt = None
    if load > 1e-9:
        share_p = min(1.0, flows.loads_green_physical / load)
        share_m = min(1.0, flows.loads_green_market / load)
        ef_loc = factor_set.grid_factor(park.grid_region).value
        ci_loc = (1.0 - share_p) * ef_loc * 1000.0
        ci_mkt = (1.0 - share_m) * factor_set.residual.value * 1000.0
    return LiveBalance(
        power_by_role_kw=by_role,
        grid_import_kw=imp,
        grid_export_kw=exp,
        renewable_kw=gen,
        green_direct_kw=green_direct,
        storage_charge_kw=charge,
        storage_discharge_kw=discharge,
        load_kw=load,
        green_share_physical=share_p,
        green_share_market=share_m,
        carbon_intensity_location_g_per_kwh=ci_loc,
        carbon_intensity_market_g_per_kwh=ci_mkt,
        missing_devices=tuple(missing),
    )


#: kWh per kg of standard coal equivalent (29.3076 MJ/kgce, GB/T 2589): fuel energy on the
#: same basis as `energy_tce` (docs/accounting.md)
KWH_PER_KGCE = 29.3076 / 3.6
#: hydrogen at its lower heating value, 120 MJ/kg (as `energy_tce` counts it)
H2_KWH_PER_KG = 120.0 / 3.6

_FUEL_COUNTERS = ("gas_m3", "fuel_kg", "fuel_l")


def _heat_kw(rates: Mapping[str, float]) -> float | None:
    """Heat rate in kW from `heat_gj` (GJ/h) or `heat_kwh` (kWh/h) counter rates."""
    if "heat_gj" in rates:
        return rates["heat_gj"] / GJ_PER_KWH
    return rates.get("heat_kwh")


@dataclass(slots=True)
class ThermalLive:
    """Heat, fuel and hydrogen flowing now, from counter rates (per hour) of fresh counters.

    Fuels stay in their own units (m³/h, kg/h, L/h) for the emissions and are converted to kW
    on the standard-coal basis for drawing. Heat pumps and electrolyzers are electricity
    sub-meters: their kW is already inside the loads; here only to draw where it goes.
    """

    #: (fuel, counter) → quantity per hour, e.g. ("natural_gas", "gas_m3") → 120.0 m³/h
    fuel_per_h: dict[tuple[str, str], float] = field(default_factory=dict)
    boiler_heat_kw: float = 0.0
    district_heat_kw: float = 0.0
    heat_recovered_kw: float = 0.0
    heat_pump_kw: float = 0.0
    heat_pump_heat_kw: float = 0.0
    electrolyzer_kw: float = 0.0
    #: hydrogen class → kg/h bought in (role `hydrogen`)
    hydrogen_kg_per_h: dict[str, float] = field(default_factory=dict)

    def add(
        self,
        role: Role,
        rates: Mapping[str, float],
        *,
        fuel: str | None = None,
        h2_class: str | None = None,
        power_kw: float | None = None,
    ) -> bool:
        """Add one device's current rates; False when its flow is unknown (no rate yet).

        `power_kw` is the device's reported power: electricity for heat pumps and
        electrolyzers, heat output for boilers and heat meters (used when no heat counter
        rate is known)."""
        if role is Role.HEAT_FUEL:
            known = False
            for counter in _FUEL_COUNTERS:
                if counter in rates and fuel is not None:
                    key = (fuel, counter)
                    self.fuel_per_h[key] = self.fuel_per_h.get(key, 0.0) + rates[counter]
                    known = True
            if "heat_kwh" in rates:
                self.boiler_heat_kw += rates["heat_kwh"]
            elif power_kw is not None:  # its heat output as it reports it
                self.boiler_heat_kw += max(0.0, power_kw)
            return known
        if role in (Role.HEAT_PURCHASED, Role.HEAT_RECOVERED):
            q = _heat_kw(rates)
            if q is None and power_kw is not None:  # thermal kW as the meter reports it
                q = max(0.0, power_kw)
            if q is None:
                return False
            if role is Role.HEAT_PURCHASED:
                self.district_heat_kw += q
            else:
                self.heat_recovered_kw += q
            return True
        if role is Role.HYDROGEN:
            if "h2_kg" not in rates or h2_class is None:
                return False
            kg = self.hydrogen_kg_per_h.get(h2_class, 0.0)
            self.hydrogen_kg_per_h[h2_class] = kg + rates["h2_kg"]
            return True
        if role is Role.HEAT_PUMP:
            if power_kw is not None:
                self.heat_pump_kw += max(0.0, power_kw)
            q = _heat_kw(rates)
            if q is not None:
                self.heat_pump_heat_kw += q
            return power_kw is not None
        if role is Role.ELECTROLYZER:
            if power_kw is not None:
                self.electrolyzer_kw += max(0.0, power_kw)
            return power_kw is not None
        return True

    def fuel_kw(self, fs: FactorSet) -> float:
        """Energy of the fuels burned now, kW (standard-coal basis; unknown fuels left out)."""
        kw = 0.0
        for (fuel, counter), per_h in self.fuel_per_h.items():
            try:
                kw += per_h * fs.fuel_factors(fuel, counter).coal.value * KWH_PER_KGCE
            except ValueError:
                continue
        return kw

    @property
    def heat_kw(self) -> float:
        """Heat supplied now: boilers + district heat + recovered heat + heat pumps."""
        return (
            self.boiler_heat_kw
            + self.district_heat_kw
            + self.heat_recovered_kw
            + self.heat_pump_heat_kw
        )

    def as_dict(self, fs: FactorSet) -> dict[str, Any]:
        h2_kg = sum(self.hydrogen_kg_per_h.values())
        return {
            "heat_kw": round(self.heat_kw, 3),
            "heat_gj_per_h": round(self.heat_kw * GJ_PER_KWH, 6),
            "boiler_fuel_kw": round(self.fuel_kw(fs), 3),
            "boiler_heat_kw": round(self.boiler_heat_kw, 3),
            "district_heat_kw": round(self.district_heat_kw, 3),
            "district_heat_gj_per_h": round(self.district_heat_kw * GJ_PER_KWH, 6),
            "heat_recovered_kw": round(self.heat_recovered_kw, 3),
            "heat_pump_kw": round(self.heat_pump_kw, 3),
            "heat_pump_heat_kw": round(self.heat_pump_heat_kw, 3),
            "electrolyzer_kw": round(self.electrolyzer_kw, 3),
            "fuels": [
                {"fuel": fuel, "counter": counter, "per_h": round(per_h, 6)}
                for (fuel, counter), per_h in sorted(self.fuel_per_h.items())
            ],
            "hydrogen_kg_per_h": round(h2_kg, 6),
            "hydrogen_kw": round(h2_kg * H2_KWH_PER_KG, 3),
        }


@dataclass(frozen=True, slots=True)
class EmissionRate:
    """The park's CO2 emission rate now, kgCO2/h, by scope and in both views.

    The totals are scope 1 + scope 2 + purchased heat, the same sum as `net_kg` of /balance
    before offsets (location or market scope 2); hydrogen bought in is shown beside them.
    Not to be confused with the carbon intensity of the electricity (gCO2/kWh).
    """

    scope1: float
    scope2_location: float
    scope2_market: float
    heat_purchased: float
    hydrogen: float
    warnings: tuple[str, ...] = ()

    @property
    def location(self) -> float:
        return self.scope1 + self.scope2_location + self.heat_purchased

    @property
    def market(self) -> float:
        return self.scope1 + self.scope2_market + self.heat_purchased

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": round(self.location, 3),
            "market": round(self.market, 3),
            "scope1": round(self.scope1, 3),
            "scope2_location": round(self.scope2_location, 3),
            "scope2_market": round(self.scope2_market, 3),
            "heat_purchased": round(self.heat_purchased, 3),
            "hydrogen": round(self.hydrogen, 3),
        }


def emission_rate(
    grid_import_kw: float,
    thermal: ThermalLive,
    factor_set: FactorSet,
    grid_region: str,
    certified_fraction: float = 0.0,
) -> EmissionRate:
    """Emission rate (kgCO2/h) from what flows now, with the factors of the accounting
    (docs/accounting.md): imports × grid factor (location) or × residual factor on the part not
    covered by certificates (market); fuel per hour × fuel factor; purchased heat GJ/h × heat
    factor; hydrogen kg/h × class factor."""
    warnings: list[str] = []
    certified = min(1.0, max(0.0, certified_fraction))
    imp = max(0.0, grid_import_kw)
    scope2_loc = imp * factor_set.grid_factor(grid_region).value
    scope2_mkt = imp * (1.0 - certified) * factor_set.residual.value
    scope1 = 0.0
    for (fuel, counter), per_h in sorted(thermal.fuel_per_h.items()):
        try:
            scope1 += per_h * factor_set.fuel_factors(fuel, counter).co2.value
        except ValueError as exc:
            warnings.append(str(exc))
    heat = thermal.district_heat_kw * GJ_PER_KWH * factor_set.heat.value
    h2 = 0.0
    for cls, kg in sorted(thermal.hydrogen_kg_per_h.items()):
        try:
            h2 += kg * factor_set.hydrogen_factor(cls).value
        except ValueError as exc:
            warnings.append(str(exc))
    return EmissionRate(scope1, scope2_loc, scope2_mkt, heat, h2, tuple(warnings))
