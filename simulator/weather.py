"""Outdoor temperature and cloud cover: seasonal and daily cycles plus correlated noise."""

from __future__ import annotations

import math
import random

from simulator.rng import AR1

#: Shenyang climate: annual mean and half the July−January swing, °C.
LIAONING_MEAN_C = 7.5
LIAONING_SEASONAL_AMP_C = 18.0
DIURNAL_AMP_C = 5.0


def seasonal_temp_c(day_of_year: float, local_hour: float, latitude_deg: float) -> float:
    """Expected air temperature: coldest mid-January, warmest mid-July (flipped south)."""
    mean = LIAONING_MEAN_C - 0.6 * (abs(latitude_deg) - 41.8)
    season = -math.cos(2.0 * math.pi * (day_of_year - 15.0) / 365.0)
    if latitude_deg < 0:
        season = -season
    # daily minimum at 03:00, maximum at 15:00 local time
    diurnal = math.sin(2.0 * math.pi * (local_hour - 9.0) / 24.0)
    return mean + LIAONING_SEASONAL_AMP_C * season + DIURNAL_AMP_C * diurnal


class Weather:
    """One park's weather; anomalies are AR(1) so cold snaps last days, clouds hours."""

    def __init__(self, rng: random.Random, step_s: float, latitude_deg: float) -> None:
        self.latitude_deg = latitude_deg
        self._temp_anomaly = AR1(rng, 2.5 * 86400.0, step_s)
        self._cloud_slow = AR1(rng, 8 * 3600.0, step_s)
        self._cloud_fast = AR1(rng, 900.0, step_s)
        self.temp_c = 0.0
        self.cloud_cover = 0.0

    def next(self, day_of_year: float, local_hour: float) -> None:
        # σ 4.5 K anomalies: a January night at −16 °C expected reaches −20 °C and below
        anomaly = 4.5 * self._temp_anomaly.next()
        self.temp_c = seasonal_temp_c(day_of_year, local_hour, self.latitude_deg) + anomaly
        slow = self._cloud_slow.next()
        fast = self._cloud_fast.next()
        # mostly clear skies (Liaoning has ~2500 sunshine hours) with passing clouds
        self.cloud_cover = min(1.0, max(0.0, 0.42 + 0.4 * slow + 0.12 * fast))
