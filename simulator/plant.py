"""The park's physics per time step: every device's power, the step's energies, grid balance."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.registry.models import Device, Park, Role
from simulator.heat import (
    BOILER_EFFICIENCY,
    FUEL_COUNTER,
    KWH_PER_GJ,
    district_supply_temp_c,
    flow_m3h,
    heat_demand_fraction,
    heat_pump_capacity_fraction,
    heat_pump_cop,
    return_temp_c,
)
from simulator.loads import EvCharger, ShapedLoad, electrolyzer_power_kw
from simulator.rng import AR1, stream
from simulator.solar import (
    DEFAULT_LATITUDE,
    clear_sky_ghi_wm2,
    cloud_transmission,
    cos_zenith,
    hour_angle_rad,
    plane_of_array_wm2,
    pv_power_kw,
)
from simulator.storage import Battery, is_valley
from simulator.weather import Weather
from simulator.wind import WindSpeed, power_curve_fraction

#: Size assumed when the registry gives no max_kw (kW; storage: kWh capacity).
DEFAULT_MAX_KW: dict[Role, float] = {
    Role.PV: 1000.0,
    Role.WIND: 2000.0,
    Role.GREEN_DIRECT: 1500.0,
    Role.LOAD: 800.0,
    Role.EV_CHARGER: 360.0,
    Role.ELECTROLYZER: 1000.0,
    Role.HEAT_PUMP: 600.0,
    Role.HEAT_FUEL: 2000.0,
    Role.HEAT_PURCHASED: 3000.0,
    Role.HEAT_RECOVERED: 300.0,
}
DEFAULT_CAPACITY_KWH = 2000.0
#: Electrolysis: kWh of electricity per kg of hydrogen (stack + balance of plant).
ELECTROLYZER_KWH_PER_KG = 52.0
_OFFICE_HINTS = ("office", "bldg", "building", "admin", "办公")


def size_kw(device: Device) -> float:
    if device.max_kw is not None:
        return device.max_kw
    if device.role is Role.STORAGE:
        return (device.capacity_kwh or DEFAULT_CAPACITY_KWH) / 2.0
    return DEFAULT_MAX_KW.get(device.role, 500.0)


#: Typical capacity factors in Liaoning, used only to size loads the registry leaves unsized.
_CAPACITY_FACTOR = {Role.PV: 0.14, Role.WIND: 0.25, Role.GREEN_DIRECT: 0.3}
#: Mean of each load shape over a week, as a fraction of its max_kw.
_MEAN_SHAPE = {"factory": 0.6, "office": 0.4}


def unsized_load_kw(park: Park) -> dict[str, float]:
    """max_kw for `load` devices without one: together they use about what the park makes.

    A fixed default would turn a park with 6.5 MW of renewables and one unsized building
    into a 95 % exporter; a zero-carbon park is built to consume its own generation.
    """
    unsized = [d for d in park.devices if d.role is Role.LOAD and d.max_kw is None]
    if not unsized:
        return {}
    mean_gen_kw = sum(
        size_kw(d) * _CAPACITY_FACTOR[d.role] for d in park.devices if d.role in _CAPACITY_FACTOR
    )
    if mean_gen_kw <= 0.0:
        return {d.id: DEFAULT_MAX_KW[Role.LOAD] for d in unsized}
    share = mean_gen_kw / len(unsized)
    return {d.id: max(100.0, share / _MEAN_SHAPE[load_kind(d)]) for d in unsized}


def load_kind(device: Device) -> str:
    text = f"{device.id} {device.name or ''}".lower()
    return "office" if any(h in text for h in _OFFICE_HINTS) else "factory"


@dataclass(slots=True)
class Balance:
    """Park electricity flows of one step, kW (all ≥ 0 except `grid_kw`: + import, − export)."""

    load_kw: float = 0.0  # load + ev_charger sub-meters
    heat_pump_kw: float = 0.0
    electrolyzer_kw: float = 0.0
    charge_kw: float = 0.0
    discharge_kw: float = 0.0
    pv_kw: float = 0.0
    wind_kw: float = 0.0
    green_direct_kw: float = 0.0
    grid_kw: float = 0.0

    @property
    def consumption_kw(self) -> float:
        return self.load_kw + self.heat_pump_kw + self.electrolyzer_kw


@dataclass(slots=True)
class StepResult:
    """What happened in `[t_ns, t_ns + step_s)`: per-device powers and counter amounts."""

    t_ns: int
    step_s: float
    outdoor_c: float
    balance: Balance
    #: per device, per counter: amount over the step in the counter's unit (kWh, m³, kg, GJ)
    amounts: dict[str, dict[str, float]] = field(default_factory=dict)
    #: per device: instantaneous values at t_ns (power_kw signed as in docs/gateway-contract.md,
    #: soc_pct, temps)
    instant: dict[str, dict[str, float]] = field(default_factory=dict)
    #: heat delivered per heat device, kW (for tests and the docs' examples)
    heat_kw: dict[str, float] = field(default_factory=dict)
    heat_demand_kw: float = 0.0
    #: storage content before/after the step, kWh, per storage device
    content_kwh: dict[str, tuple[float, float]] = field(default_factory=dict)


class ParkModel:
    """Deterministic (given the seed) physical model of one park, advanced step by step."""

    def __init__(self, park: Park, seed: int, step_s: float, start_ns: int = 0) -> None:
        self.park = park
        self.step_s = step_s
        self.step_h = step_s / 3600.0
        self.latitude = park.latitude if park.latitude is not None else DEFAULT_LATITUDE
        self._longitude = park.longitude
        self.seed = seed
        # the start is part of every stream's name: a run starting in July does not replay
        # the wind of a run starting in January with the same seed
        rs = f"{park.id}@{start_ns}"
        self.weather = Weather(stream(seed, rs, "weather"), step_s, self.latitude)
        by_role: dict[Role, list[Device]] = {}
        for d in park.devices:
            by_role.setdefault(d.role, []).append(d)
        self.by_role = by_role
        self._wind = {
            d.id: WindSpeed(stream(seed, rs, d.id, "wind"), step_s)
            for d in by_role.get(Role.WIND, [])
        }
        # the direct green line brings a remote wind farm's output (its own wind regime)
        self._green = {
            d.id: WindSpeed(stream(seed, rs, d.id, "green"), step_s, scale_c=8.0)
            for d in by_role.get(Role.GREEN_DIRECT, [])
        }
        load_kw = unsized_load_kw(park)
        self._loads = {
            d.id: ShapedLoad(
                stream(seed, rs, d.id, "load"), step_s, load_kw.get(d.id, size_kw(d)), load_kind(d)
            )
            for d in by_role.get(Role.LOAD, [])
        }
        self._ev = {
            d.id: EvCharger(stream(seed, rs, d.id, "ev"), step_s, size_kw(d))
            for d in by_role.get(Role.EV_CHARGER, [])
        }
        self._batteries: dict[str, Battery] = {}
        for d in by_role.get(Role.STORAGE, []):
            cap = d.capacity_kwh or DEFAULT_CAPACITY_KWH
            start_soc = 0.2 + 0.5 * stream(seed, rs, d.id, "soc").random()
            self._batteries[d.id] = Battery(cap, size_kw(d), start_soc * cap)
        self._night_rng = stream(seed, rs, "grid-charge-nights")
        self._night_day: int | None = None
        self._grid_charge_tonight = False
        self._heat_noise = AR1(stream(seed, rs, "heat"), 3600.0, step_s)
        self._h2_noise = AR1(stream(seed, rs, "h2"), 3600.0, step_s)
        heat_roles = (Role.HEAT_PUMP, Role.HEAT_FUEL, Role.HEAT_PURCHASED)
        self.design_heat_kw = 0.85 * sum(size_kw(d) for r in heat_roles for d in by_role.get(r, []))

    def _longitude_for(self, local: datetime) -> float:
        if self._longitude is not None:
            return self._longitude
        # no longitude: assume the zone's standard meridian (120° E for UTC+8)
        off = local.utcoffset()
        return (off.total_seconds() / 240.0) if off is not None else 0.0

    def step(self, t_ns: int) -> StepResult:
        local = datetime.fromtimestamp(t_ns / 1e9, self.park.tz)
        hour = local.hour + local.minute / 60.0 + local.second / 3600.0
        weekday = local.weekday()
        doy = local.timetuple().tm_yday
        w = self.weather
        w.next(doy + hour / 24.0, hour)
        h = self.step_h
        res = StepResult(t_ns, self.step_s, w.temp_c, Balance())
        bal = res.balance

        # --- generation
        utc_hours = (t_ns / 1e9 % 86400.0) / 3600.0
        ha = hour_angle_rad(utc_hours, self._longitude_for(local), doy)
        cz = cos_zenith(self.latitude, doy, ha)
        ghi = clear_sky_ghi_wm2(cz) * cloud_transmission(w.cloud_cover)
        poa = plane_of_array_wm2(ghi, cz, self.latitude, doy, ha)
        for d in self.by_role.get(Role.PV, []):
            p = pv_power_kw(size_kw(d), poa, w.temp_c)
            bal.pv_kw += p
            self._put(res, d, p, {"energy_kwh": p * h})
        for d in self.by_role.get(Role.WIND, []):
            speed = self._wind[d.id].next()
            p = size_kw(d) * power_curve_fraction(speed)
            bal.wind_kw += p
            self._put(res, d, p, {"energy_kwh": p * h}, wind_speed_ms=round(speed, 2))
        for d in self.by_role.get(Role.GREEN_DIRECT, []):
            p = size_kw(d) * power_curve_fraction(self._green[d.id].next())
            bal.green_direct_kw += p
            self._put(res, d, p, {"energy_import_kwh": p * h})

        # --- electric loads
        factory_kw = 0.0
        for d in self.by_role.get(Role.LOAD, []):
            load = self._loads[d.id]
            p = load.power_kw(hour, weekday)
            if load.kind == "factory":
                factory_kw += p
            bal.load_kw += p
            self._put(res, d, p, {"energy_import_kwh": p * h})
        for d in self.by_role.get(Role.EV_CHARGER, []):
            p = self._ev[d.id].power_kw(hour, weekday)
            bal.load_kw += p
            self._put(res, d, p, {"energy_import_kwh": p * h})

        # --- heat: recovered first, then heat pumps, district heat, boilers
        self._heat(res, factory_kw, hour)

        # --- electrolyzers soak up what renewables leave over
        valley = is_valley(hour)
        for d in self.by_role.get(Role.ELECTROLYZER, []):
            surplus = bal.pv_kw + bal.wind_kw + bal.green_direct_kw - bal.consumption_kw
            p = electrolyzer_power_kw(size_kw(d), valley, surplus)
            bal.electrolyzer_kw += p
            self._put(res, d, p, {"energy_import_kwh": p * h})
        for d in self.by_role.get(Role.HYDROGEN, []):
            if bal.electrolyzer_kw > 0.0:
                kg_h = bal.electrolyzer_kw / ELECTROLYZER_KWH_PER_KG
            else:  # hydrogen bought in for a process that follows the factory shifts
                kg_h = max(
                    0.0,
                    (5.0 + 15.0 * min(1.0, factory_kw / 1000.0))
                    * (1.0 + 0.1 * self._h2_noise.next()),
                )
            res.amounts[d.id] = {"h2_kg": kg_h * h}
            res.instant[d.id] = {}

        # --- storage
        # a "night" runs from noon to noon, so one decision covers the whole valley period
        day_key = local.toordinal() if hour >= 12.0 else local.toordinal() - 1
        if day_key != self._night_day:
            self._night_day = day_key
            self._grid_charge_tonight = self._night_rng.random() < 0.5
        for d in self.by_role.get(Role.STORAGE, []):
            batt = self._batteries[d.id]
            surplus = (
                bal.pv_kw
                + bal.wind_kw
                + bal.green_direct_kw
                + bal.discharge_kw
                - bal.consumption_kw
                - bal.charge_kw
            )
            c_kw, d_kw = batt.dispatch_kw(surplus, hour, self._grid_charge_tonight, h)
            before = batt.content_kwh
            soc = batt.soc_pct
            batt.apply(c_kw * h, d_kw * h)
            res.content_kwh[d.id] = (before, batt.content_kwh)
            bal.charge_kw += c_kw
            bal.discharge_kw += d_kw
            self._put(
                res,
                d,
                d_kw - c_kw,
                {"energy_charge_kwh": c_kw * h, "energy_discharge_kwh": d_kw * h},
                soc_pct=round(min(100.0, max(0.0, soc)), 2),
            )

        # --- park boundary: whatever on-site supply does not cover
        bal.grid_kw = (
            bal.consumption_kw
            + bal.charge_kw
            - bal.pv_kw
            - bal.wind_kw
            - bal.green_direct_kw
            - bal.discharge_kw
        )
        grids = self.by_role.get(Role.GRID, [])
        for d in grids:
            share = bal.grid_kw / len(grids)  # several boundary meters split the flow evenly
            self._put(
                res,
                d,
                share,
                {
                    "energy_import_kwh": max(share, 0.0) * h,
                    "energy_export_kwh": max(-share, 0.0) * h,
                },
            )
        return res

    def _heat(self, res: StepResult, factory_kw: float, hour: float) -> None:
        h = self.step_h
        t_out = res.outdoor_c
        bal = res.balance
        demand = self.design_heat_kw * heat_demand_fraction(t_out)
        demand *= max(0.0, 1.0 + 0.04 * self._heat_noise.next())
        res.heat_demand_kw = demand
        remaining = demand
        for d in self.by_role.get(Role.HEAT_RECOVERED, []):
            q = min(size_kw(d), 0.25 * factory_kw, remaining)
            remaining -= q
            self._put_heat(res, d, q, q / size_kw(d), 70.0, {"heat_gj": q * h / KWH_PER_GJ})
        for d in self.by_role.get(Role.HEAT_PUMP, []):
            cap = size_kw(d) * heat_pump_capacity_fraction(t_out)
            q = min(cap, remaining)
            remaining -= q
            supply = 45.0
            elec = q / heat_pump_cop(t_out, supply)
            bal.heat_pump_kw += elec
            res.heat_kw[d.id] = q
            # heat pumps run a narrow spread (3–8 K), unlike boilers and district heat
            ret = supply - (3.0 + 5.0 * q / size_kw(d))
            res.amounts[d.id] = {"energy_import_kwh": elec * h, "heat_kwh": q * h}
            res.instant[d.id] = {
                "power_kw": round(elec, 3),
                "temp_c": round(t_out, 1),
                "supply_temp_c": supply,
                "return_temp_c": round(ret, 1),
            }
        for d in self.by_role.get(Role.HEAT_PURCHASED, []):
            q = min(size_kw(d), remaining)
            remaining -= q
            supply = district_supply_temp_c(t_out)
            self._put_heat(res, d, q, q / size_kw(d), supply, {"heat_gj": q * h / KWH_PER_GJ})
        for d in self.by_role.get(Role.HEAT_FUEL, []):
            q = min(size_kw(d), remaining)
            remaining -= q
            counter, lhv = FUEL_COUNTER[d.fuel.value if d.fuel else "natural_gas"]
            fuel = q / BOILER_EFFICIENCY / lhv * h
            self._put_heat(res, d, q, q / size_kw(d), 80.0, {counter: fuel, "heat_kwh": q * h})

    @staticmethod
    def _put(
        res: StepResult, d: Device, power_kw: float, amounts: dict[str, float], **extra: float
    ) -> None:
        res.amounts[d.id] = amounts
        # + 0.0 turns a rounded -0.0 into 0.0, which reads oddly on a dashboard
        res.instant[d.id] = {"power_kw": round(power_kw, 3) + 0.0, **extra}

    @staticmethod
    def _put_heat(
        res: StepResult,
        d: Device,
        q_kw: float,
        load_fraction: float,
        supply_c: float,
        amounts: dict[str, float],
    ) -> None:
        res.heat_kw[d.id] = q_kw
        res.amounts[d.id] = amounts
        ret = return_temp_c(supply_c, load_fraction)
        res.instant[d.id] = {
            "supply_temp_c": round(supply_c, 1),
            "return_temp_c": round(ret, 1),
            "flow_m3h": round(flow_m3h(q_kw, supply_c, ret), 2) if q_kw > 0 else 0.0,
        }
