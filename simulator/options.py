"""Gateway behaviour switches: batching, outages, meter resets, glitches, malformed payloads,
skew."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """How the simulated gateways misbehave. All off by default: clean, one reading a message.

    Rates are per device (per park gateway for outages) per simulated day; every random
    choice comes from the run's seed, so a run is reproducible.
    """

    #: readings per message; > 1 sends JSON arrays of this many readings per device
    batch: int = 1
    #: gateway outages per day; readings are buffered and flushed late as arrays
    offline_per_day: float = 0.0
    #: longest outage, minutes (each lasts 5 min .. this, uniformly)
    offline_max_min: float = 60.0
    #: readings per array when a buffer is flushed after an outage
    flush_chunk: int = 500
    #: meter resets announced with `"reset": true`, per device per day
    resets_per_day: float = 0.0
    #: meters replaced silently (counter back near zero, no flag), per device per day
    replacements_per_day: float = 0.0
    #: probability, per published message, that the gateway also sends a malformed one
    malformed_rate: float = 0.0
    #: largest clock skew, seconds; a seeded 20 % of devices get a skew in ±this
    skew_max_s: float = 0.0
    #: bad readings per device per day, sent besides the real ones (a Modbus read error
    #: as 0, a wrong register, a spike x1000, the same ts again with another value): the
    #: collector must suppress each at the cost of one flagged interval (docs/intervals.md)
    glitches_per_day: float = 0.0

    @classmethod
    def faulty(cls) -> GatewayOptions:
        """A realistic mix of every fault, for soak tests and demos (`--faults`)."""
        return cls(
            batch=1,
            offline_per_day=2.0,
            offline_max_min=45.0,
            resets_per_day=0.05,
            replacements_per_day=0.02,
            malformed_rate=0.001,
            skew_max_s=30.0,
            glitches_per_day=0.5,
        )

    @classmethod
    def demo(cls) -> GatewayOptions:
        """The demo park (`lingtan up --demo`): clean but for a glitch now and then."""
        return cls(glitches_per_day=2.0)
