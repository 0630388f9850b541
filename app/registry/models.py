"""Park registry types: parks, devices, roles and the counters each role publishes."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.registry.alarm_settings import AlarmSettings
from app.registry.sources import DeviceSource
from app.tariffs.models import Tariff

ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_ID_RE = re.compile(ID_PATTERN)


class Role(StrEnum):
    """What a device is: how its counters enter the accounting (docs/gateway-contract.md §7)."""

    GRID = "grid"
    PV = "pv"
    WIND = "wind"
    GREEN_DIRECT = "green_direct"
    STORAGE = "storage"
    LOAD = "load"
    EV_CHARGER = "ev_charger"
    ELECTROLYZER = "electrolyzer"
    HEAT_PUMP = "heat_pump"
    HEAT_FUEL = "heat_fuel"
    HEAT_PURCHASED = "heat_purchased"
    HEAT_RECOVERED = "heat_recovered"
    HYDROGEN = "hydrogen"


#: Sub-meters: shown as a breakdown, never added to the park balance.
SUBMETER_ROLES = frozenset({Role.LOAD, Role.EV_CHARGER, Role.ELECTROLYZER, Role.HEAT_PUMP})

#: Roles whose generation counts as on-site renewable electricity.
RENEWABLE_ROLES = frozenset({Role.PV, Role.WIND})


class Fuel(StrEnum):
    NATURAL_GAS = "natural_gas"
    COAL = "coal"
    DIESEL = "diesel"
    LPG = "lpg"
    BIOMASS = "biomass"


class H2Class(StrEnum):
    GREY = "grey"
    LOW_CARBON = "low_carbon"
    CLEAN = "clean"
    RENEWABLE = "renewable"


#: Cumulative counters (never decreasing except at a reset), docs/gateway-contract.md.
COUNTER_QUANTITIES = frozenset(
    {
        "energy_import_kwh",
        "energy_export_kwh",
        "energy_kwh",
        "energy_charge_kwh",
        "energy_discharge_kwh",
        "heat_kwh",
        "heat_gj",
        "gas_m3",
        "fuel_kg",
        "fuel_l",
        "h2_kg",
    }
)

#: Instantaneous quantities, docs/gateway-contract.md.
INSTANT_QUANTITIES = frozenset(
    {
        "power_kw",
        "soc_pct",
        "soh_pct",
        "temp_c",
        "supply_temp_c",
        "return_temp_c",
        "flow_m3h",
        "voltage_v",
        "current_a",
    }
)

#: Counters each role is expected to publish (docs/gateway-contract.md §7); for completeness.
ROLE_COUNTERS: dict[Role, tuple[str, ...]] = {
    Role.GRID: ("energy_import_kwh", "energy_export_kwh"),
    Role.PV: ("energy_kwh",),
    Role.WIND: ("energy_kwh",),
    Role.GREEN_DIRECT: ("energy_import_kwh",),
    Role.STORAGE: ("energy_charge_kwh", "energy_discharge_kwh"),
    Role.LOAD: ("energy_import_kwh",),
    Role.EV_CHARGER: ("energy_import_kwh",),
    Role.ELECTROLYZER: ("energy_import_kwh",),
    Role.HEAT_PUMP: ("energy_import_kwh",),
    Role.HEAT_FUEL: (),  # one of gas_m3 / fuel_kg / fuel_l, depends on the fuel
    Role.HEAT_PURCHASED: (),  # heat_gj or heat_kwh
    Role.HEAT_RECOVERED: (),  # heat_gj or heat_kwh
    Role.HYDROGEN: ("h2_kg",),
}


class Device(BaseModel):
    """One metered device of a park. Its role comes from here, never from the MQTT topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN)
    role: Role
    name: str | None = None
    max_kw: float | None = Field(default=None, gt=0, description="plausibility bound, kW")
    capacity_kwh: float | None = Field(default=None, gt=0, description="storage capacity")
    fuel: Fuel | None = None
    h2_class: H2Class | None = None
    included_in: str | None = Field(default=None, description="parent meter of a sub-meter")
    #: its gateway's format and fields, when it does not publish native JSON (docs/gateways.md)
    source: DeviceSource | None = None

    @model_validator(mode="after")
    def _role_fields(self) -> Device:
        if self.role is Role.HEAT_FUEL and self.fuel is None:
            raise ValueError(
                "a heat_fuel device needs 'fuel' (natural_gas, coal, diesel, lpg, biomass)"
            )
        if self.fuel is not None and self.role is not Role.HEAT_FUEL:
            raise ValueError(f"'fuel' only applies to role heat_fuel, not {self.role.value}")
        if self.h2_class is not None and self.role is not Role.HYDROGEN:
            raise ValueError(f"'h2_class' only applies to role hydrogen, not {self.role.value}")
        if self.role is Role.HYDROGEN and self.h2_class is None:
            raise ValueError(
                "a hydrogen device needs 'h2_class' (grey, low_carbon, clean, renewable)"
            )
        return self


class Park(BaseModel):
    """A park: its time zone (interval alignment), grid region and factor set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    timezone: str = "Asia/Shanghai"
    grid_region: str = "national"
    factor_set: str = "cn-2023"
    interval_minutes: int = Field(default=15, gt=0, le=60)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    devices: tuple[Device, ...] = ()
    #: thresholds and delivery of the park's alarms (docs/alarms.md); None = the defaults
    alarms: AlarmSettings | None = None
    #: time-of-use tariff the balance prices energy with (docs/cost.md); None = no cost
    tariff: Tariff | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            # OSError: "Asia" is a directory of the tz database, an over-long key a bad path
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from exc
        return value

    @field_validator("interval_minutes")
    @classmethod
    def _divides_hour(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("interval_minutes must divide 60 (5, 10, 15, 20, 30, 60)")
        return value

    @model_validator(mode="after")
    def _device_links(self) -> Park:
        seen: set[str] = set()
        for device in self.devices:
            if device.id in seen:
                raise ValueError(f"duplicate device id {device.id!r}")
            seen.add(device.id)
        for device in self.devices:
            if device.included_in is None:
                continue
            if device.included_in not in seen:
                raise ValueError(
                    f"device {device.id!r}: included_in {device.included_in!r}"
                    " is not a device of this park"
                )
            if device.included_in == device.id:
                raise ValueError(f"device {device.id!r} cannot be included in itself")
        return self

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def device_map(self) -> dict[str, Device]:
        return {d.id: d for d in self.devices}

    def device(self, device_id: str) -> Device | None:
        return self.device_map.get(device_id)


class Registry(BaseModel):
    """All parks known to this installation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parks: tuple[Park, ...] = ()

    @model_validator(mode="after")
    def _unique_parks(self) -> Registry:
        seen: set[str] = set()
        for park in self.parks:
            if park.id in seen:
                raise ValueError(f"duplicate park id {park.id!r}")
            seen.add(park.id)
        return self

    @cached_property
    def park_map(self) -> dict[str, Park]:
        return {p.id: p for p in self.parks}

    def park(self, park_id: str) -> Park | None:
        return self.park_map.get(park_id)

    def device(self, park_id: str, device_id: str) -> Device | None:
        park = self.park_map.get(park_id)
        return park.device(device_id) if park else None


def valid_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))
