"""PV: sun position, Haurwitz clear-sky irradiance, tilted array, clouds, PV power."""

from __future__ import annotations

import math

#: Default park latitude (Liaoning, e.g. Shenyang/Shenfu) when the registry gives none.
DEFAULT_LATITUDE = 41.8


def declination_rad(day_of_year: int) -> float:
    """Cooper's formula."""
    return math.radians(23.45) * math.sin(2.0 * math.pi * (284 + day_of_year) / 365.0)


def equation_of_time_min(day_of_year: int) -> float:
    b = 2.0 * math.pi * (day_of_year - 81) / 364.0
    return 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)


def hour_angle_rad(utc_hours: float, longitude_deg: float, day_of_year: int) -> float:
    """Hour angle: 0 at solar noon, negative in the morning."""
    solar_hours = utc_hours + longitude_deg / 15.0 + equation_of_time_min(day_of_year) / 60.0
    return math.radians(15.0 * (solar_hours - 12.0))


def cos_zenith(latitude_deg: float, day_of_year: int, hour_angle: float) -> float:
    lat = math.radians(latitude_deg)
    dec = declination_rad(day_of_year)
    return math.sin(lat) * math.sin(dec) + math.cos(lat) * math.cos(dec) * math.cos(hour_angle)


def clear_sky_ghi_wm2(cos_z: float) -> float:
    """Haurwitz (1945) global horizontal irradiance under a clear sky; 0 with the sun down."""
    if cos_z <= 0.0:
        return 0.0
    return 1098.0 * cos_z * math.exp(-0.057 / cos_z)


def plane_of_array_wm2(
    ghi: float, cos_z: float, latitude_deg: float, day_of_year: int, hour_angle: float
) -> float:
    """Irradiance on an equator-facing array tilted at the latitude.

    80 % of GHI is treated as beam and projected onto the panel, 20 % as isotropic diffuse;
    this is why a Liaoning array still makes a good share of its summer peak in winter.
    """
    if ghi <= 0.0:
        return 0.0
    # tilt = latitude: incidence angle equals the zenith angle at the equator
    cos_inc = math.cos(declination_rad(day_of_year)) * math.cos(hour_angle)
    ratio = min(max(cos_inc, 0.0) / max(cos_z, 0.087), 3.0)
    return 0.8 * ghi * ratio + 0.2 * ghi


def cloud_transmission(cloud_cover: float) -> float:
    """Kasten–Czeplak: fraction of clear-sky irradiance left under cloud cover in [0, 1]."""
    c = min(max(cloud_cover, 0.0), 1.0)
    return 1.0 - 0.75 * math.pow(c, 3.4)


def pv_power_kw(
    max_kw: float, poa_wm2: float, air_temp_c: float, performance_ratio: float = 0.8
) -> float:
    """AC output: linear in irradiance, −0.4 %/K above 25 °C cell temperature, capped."""
    if poa_wm2 <= 0.0:
        return 0.0
    cell_c = air_temp_c + 0.03 * poa_wm2
    derate = 1.0 - 0.004 * (cell_c - 25.0)
    return min(max_kw, max(0.0, max_kw * poa_wm2 / 1000.0 * performance_ratio * derate))
