"""Live view: power by role, live green share and carbon intensity from current device powers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.registry.models import SUBMETER_ROLES, Park, Role

from .factors import FactorSet
from .flows import Supply, allocate
from .storage import StorageDeviceState


@dataclass(frozen=True, slots=True)
class LiveBalance:
    """Instantaneous balance (kW) and the green share / intensity of what the loads use now."""

    power_by_role_kw: dict[str, float]  # signed as published (SPEC §2), summed per role
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
    """Live balance from the latest `power_kw` per device id (sign per SPEC §2).

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
