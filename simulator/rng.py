"""Seeded random streams: one independent, reproducible stream per (seed, purpose)."""

from __future__ import annotations

import math
import random


def stream(seed: int, *purpose: str) -> random.Random:
    """A `random.Random` that depends only on the seed and the purpose labels.

    String seeds are hashed with SHA-512 by `random.seed` (version 2), so the stream is the
    same across processes and Python runs (unlike `hash()`), and adding a device does not
    shift the random numbers of the others.
    """
    return random.Random(":".join((str(seed), *purpose)))


class AR1:
    """Standard-normal AR(1) process with correlation time `tau_s`, sampled every `step_s`."""

    __slots__ = ("_noise", "_phi", "_rng", "value")

    def __init__(self, rng: random.Random, tau_s: float, step_s: float) -> None:
        self._rng = rng
        self._phi = math.exp(-step_s / tau_s) if tau_s > 0 else 0.0
        # keeps the stationary variance at 1 whatever the step
        self._noise = math.sqrt(1.0 - self._phi * self._phi)
        self.value = rng.gauss(0.0, 1.0)

    def next(self) -> float:
        self.value = self._phi * self.value + self._noise * self._rng.gauss(0.0, 1.0)
        return self.value


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
