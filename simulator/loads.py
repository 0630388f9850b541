"""Electric loads: factory, office, EV chargers, electrolyzers, with daily and weekly shapes."""

from __future__ import annotations

import random

from simulator.rng import AR1


def factory_shape(local_hour: float, weekday: int) -> float:
    """Fraction of max_kw: two shifts 08–24 on weekdays, one on Saturday, base load always."""
    base = 0.35
    if weekday < 5:
        on = 1.0 if 8.0 <= local_hour < 24.0 else 0.0
        level = 0.95
    elif weekday == 5:
        on = 1.0 if 8.0 <= local_hour < 17.0 else 0.0
        level = 0.7
    else:
        on, level = 0.0, 0.0
    # ramp-up over the first hour of the shift
    if on and local_hour < 9.0:
        on = local_hour - 8.0
    return base + (level - base) * on if on else base


def office_shape(local_hour: float, weekday: int) -> float:
    """Fraction of max_kw: occupied 08:30–18:00 on weekdays, lunch dip, night standby."""
    if weekday >= 5 or not 8.5 <= local_hour < 18.0:
        return 0.15
    if 12.0 <= local_hour < 13.0:
        return 0.7
    return 0.9


def ev_arrival_shape(local_hour: float, weekday: int) -> float:
    """Relative arrival intensity: workplace charging in the morning, public in the evening."""
    if weekday < 5 and 7.5 <= local_hour < 10.0:
        return 1.0
    if 17.5 <= local_hour < 22.0:
        return 0.8
    if 10.0 <= local_hour < 17.5:
        return 0.3
    return 0.05


class ShapedLoad:
    """A load following a shape with slow multiplicative noise (never negative, ≤ max_kw)."""

    def __init__(self, rng: random.Random, step_s: float, max_kw: float, kind: str) -> None:
        self.max_kw = max_kw
        self.kind = kind
        self._noise = AR1(rng, 1800.0, step_s)

    def power_kw(self, local_hour: float, weekday: int) -> float:
        shape = office_shape if self.kind == "office" else factory_shape
        level = shape(local_hour, weekday) * (1.0 + 0.08 * self._noise.next())
        return min(self.max_kw, max(0.0, level * self.max_kw))


class EvCharger:
    """Charging points as on/off Markov chains: arrivals follow the shape, sessions ~1 h."""

    def __init__(self, rng: random.Random, step_s: float, max_kw: float, ports: int = 6) -> None:
        self.max_kw = max_kw
        self.ports = [False] * ports
        self._rng = rng
        self._step_s = step_s

    def power_kw(self, local_hour: float, weekday: int) -> float:
        p_on = min(1.0, ev_arrival_shape(local_hour, weekday) * self._step_s / 2400.0)
        p_off = min(1.0, self._step_s / 3600.0)
        for i, busy in enumerate(self.ports):
            r = self._rng.random()
            self.ports[i] = (r >= p_off) if busy else (r < p_on)
        per_port = self.max_kw / len(self.ports)
        return sum(per_port * (0.85 + 0.1 * self._rng.random()) for b in self.ports if b)


def electrolyzer_power_kw(max_kw: float, valley: bool, surplus_kw: float) -> float:
    """Full power in the night valley tariff; by day 30 % minimum, more on renewable surplus."""
    if valley:
        return max_kw
    return min(max_kw, max(0.3 * max_kw, surplus_kw))
