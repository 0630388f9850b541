"""Wind: Weibull-distributed, time-correlated hub wind speed and a turbine power curve."""

from __future__ import annotations

import math
import random

from simulator.rng import AR1, normal_cdf

CUT_IN_MS = 3.0
RATED_MS = 12.0
CUT_OUT_MS = 25.0


def weibull_speed_ms(u: float, shape_k: float = 2.0, scale_c: float = 7.0) -> float:
    """Inverse Weibull CDF: a uniform u in (0, 1) → wind speed, m/s."""
    u = min(max(u, 1e-12), 1.0 - 1e-12)
    return scale_c * math.pow(-math.log(1.0 - u), 1.0 / shape_k)


def power_curve_fraction(speed_ms: float) -> float:
    """Fraction of rated power: cubic between cut-in and rated, 0 above cut-out."""
    if speed_ms < CUT_IN_MS or speed_ms >= CUT_OUT_MS:
        return 0.0
    if speed_ms >= RATED_MS:
        return 1.0
    return (speed_ms**3 - CUT_IN_MS**3) / (RATED_MS**3 - CUT_IN_MS**3)


class WindSpeed:
    """AR(1) in Gaussian space mapped through the Weibull CDF (keeps the marginal Weibull)."""

    def __init__(
        self,
        rng: random.Random,
        step_s: float,
        tau_s: float = 4 * 3600.0,
        shape_k: float = 2.0,
        scale_c: float = 7.0,
    ) -> None:
        self._ar = AR1(rng, tau_s, step_s)
        self._gust = AR1(rng, 120.0, step_s)
        self.shape_k = shape_k
        self.scale_c = scale_c

    def next(self) -> float:
        z = 0.97 * self._ar.next() + 0.243 * self._gust.next()  # variance stays ≈ 1
        return weibull_speed_ms(normal_cdf(z), self.shape_k, self.scale_c)
