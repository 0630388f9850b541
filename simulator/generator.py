"""Pure message generator: registry + seed + time span → MQTT messages in simulated time order."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from app.registry.models import Registry
from simulator.gateway import GLITCH_KINDS, Gateway, SimStats
from simulator.options import GatewayOptions
from simulator.plant import ParkModel, StepResult
from simulator.truth import NS, TruthAccumulator

#: The brief's name for the gateway switches; one options object covers the whole run.
SimOptions = GatewayOptions


class SimMessage(NamedTuple):
    """One MQTT message: topic, payload, and the simulated time it is sent at (UTC ns).

    `malformed` names the injected fault for payloads meant to be dead-lettered (else None);
    `readings` is how many readings the payload carries; `glitch` names an injected bad
    reading (accepted, but never energy) else None.
    """

    topic: str
    payload: bytes
    sim_ns: int
    malformed: str | None = None
    readings: int = 1
    glitch: str | None = None


def _message(topic: str, payload: bytes, t_ns: int, kind: str | None, n: int) -> SimMessage:
    if kind in GLITCH_KINDS:
        return SimMessage(topic, payload, t_ns, None, n, kind)
    return SimMessage(topic, payload, t_ns, kind, n)


def to_ns(value: datetime | int) -> int:
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        raise ValueError("start must be timezone-aware (e.g. 2026-01-15T00:00:00+08:00)")
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def check_step(step_s: int, interval_minutes: int) -> None:
    interval_s = interval_minutes * 60
    if step_s < 1 or interval_s % step_s:
        raise ValueError(
            f"step of {step_s} s must be a whole number of seconds dividing the park's"
            f" {interval_minutes}-min interval (e.g. 1, 10, 30, 60, 300, 900)"
        )


def simulate(
    registry: Registry,
    park_id: str,
    start: datetime | int,
    duration: timedelta | float,
    step_s: int = 60,
    seed: int = 0,
    options: GatewayOptions | None = None,
    *,
    truth: TruthAccumulator | None = None,
    stats: SimStats | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> Iterator[SimMessage]:
    """Simulate one park and yield its gateways' messages in simulated-time order.

    Readings are at every `step_s` from `start` (floored to the step in the park's local
    time) to `start + duration` inclusive, so `duration / step_s` whole steps of energy are
    registered; `truth` receives them per park-local interval. `on_step` sees each physics
    step (powers, balance, storage content) before its readings are made.
    Deterministic: same arguments → the same bytes.
    """
    park = registry.park(park_id)
    if park is None:
        raise ValueError(f"park {park_id!r} is not in the registry")
    check_step(step_s, park.interval_minutes)
    opt = options or GatewayOptions()
    if opt.batch < 1:
        raise ValueError("batch must be at least 1")
    dur_s = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    n_steps = int(dur_s // step_s)
    t0 = to_ns(start)
    off = datetime.fromtimestamp(t0 // NS, park.tz).utcoffset() or timedelta(0)
    off_ns = int(off.total_seconds()) * NS
    t0 -= (t0 + off_ns) % (step_s * NS)
    model = ParkModel(park, seed, step_s, t0)
    gateway = Gateway(park, seed, opt, step_s, truth, stats if stats is not None else SimStats())
    sim_stats = gateway.stats
    prev: StepResult | None = None
    for k in range(n_steps + 1):
        t_ns = t0 + k * step_s * NS
        now = model.step(t_ns)
        if on_step is not None and k < n_steps:
            on_step(now)
        final = k == n_steps
        for topic, payload, kind, n in gateway.step(t_ns, prev, now, final):
            sim_stats.messages += 1
            sim_stats.readings += n
            yield _message(topic, payload, t_ns, kind, n)
        prev = now
    for topic, payload, kind, n in gateway.flush():
        sim_stats.messages += 1
        sim_stats.readings += n
        yield _message(topic, payload, t0 + n_steps * step_s * NS, kind, n)


def simulate_parks(
    registry: Registry,
    park_ids: list[str],
    start: datetime | int,
    duration: timedelta | float,
    step_s: int = 60,
    seed: int = 0,
    options: GatewayOptions | None = None,
    *,
    truth: TruthAccumulator | None = None,
    stats: SimStats | None = None,
) -> Iterator[SimMessage]:
    """Several parks at once, merged in simulated-time order (ties: registry order)."""
    shared = stats if stats is not None else SimStats()
    streams = [
        simulate(registry, p, start, duration, step_s, seed, options, truth=truth, stats=shared)
        for p in park_ids
    ]
    return heapq.merge(*streams, key=lambda m: m.sim_ns)
