"""Simulated gateways: meter registers, batching, outages, resets, malformed payloads, skew."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from app.registry.models import Park
from simulator.options import GatewayOptions
from simulator.plant import StepResult
from simulator.rng import stream
from simulator.truth import MILLI, NS, TruthAccumulator, local_interval

DAY_S = 86400.0
#: The injected malformed payloads; each produces exactly one dead letter at the collector.
MALFORMED_KINDS = (
    "invalid_json",
    "string_number",
    "non_finite",
    "negative_counter",
    "unknown_device",
    "no_quantities",
    "clock_unset",
)
UNKNOWN_DEVICE_ID = "unregistered-meter"
#: The injected glitches: readings that are accepted but must never become energy.
GLITCH_KINDS = ("glitch_zero", "glitch_wrong_register", "glitch_spike", "glitch_repeated_ts")


@dataclass(slots=True)
class SimStats:
    """What the gateways did, for progress output and for tests."""

    messages: int = 0
    readings: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    resets: int = 0
    replacements: int = 0
    outages: int = 0
    skewed_devices: dict[str, int] = field(default_factory=dict)
    glitches: dict[str, int] = field(default_factory=dict)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


@dataclass(slots=True)
class _Counter:
    phys: float  # the physical odometer, counter unit (never resets)
    phys_milli: int  # round(phys * 1000) at the last reading
    register: int  # what the meter shows, milli-units (restarts at a reset)


@dataclass(slots=True)
class _Meter:
    device: str
    topic: str
    counters: dict[str, _Counter]
    reset_rng: random.Random
    replace_rng: random.Random
    malformed_rng: random.Random
    glitch_rng: random.Random
    skew_s: int = 0
    pending: list[str] = field(default_factory=list)


def topic_for(park: str, device: str) -> str:
    return f"lingtan/v1/{park}/{device}/telemetry"


def _num(value: float) -> str:
    return json.dumps(value)


class Gateway:
    """All meters of one park behind one gateway; turns step results into MQTT payloads.

    A reading at `t` carries the registers including the energy of the step that ended at
    `t`, and the instantaneous values of the step starting at `t`.
    """

    def __init__(
        self,
        park: Park,
        seed: int,
        options: GatewayOptions,
        step_s: int,
        truth: TruthAccumulator | None,
        stats: SimStats,
    ) -> None:
        self.park = park
        self.seed = seed
        self.opt = options
        self.step_s = step_s
        self.truth = truth
        self.stats = stats
        self.meters: dict[str, _Meter] = {}
        self._offline_rng = stream(seed, park.id, "offline")
        self._offline_until_ns = 0
        self._buffer: list[tuple[str, str]] = []  # (device, reading json) while offline
        self._ts_cache: dict[int, str] = {}
        if truth is not None:
            truth.set_park(park.id, park.tz, {d.id: d.role.value for d in park.devices})

    def _meter(self, device: str, counters: list[str]) -> _Meter:
        m = self.meters.get(device)
        if m is None:
            rng = stream(self.seed, self.park.id, device, "register")
            regs = {}
            for c in counters:
                # an installed meter has run for years: start somewhere in 10k..900k units
                start_milli = rng.randrange(10_000 * MILLI, 900_000 * MILLI)
                regs[c] = _Counter(start_milli / MILLI, start_milli, start_milli)
            skew = 0
            if self.opt.skew_max_s > 0:
                srng = stream(self.seed, self.park.id, device, "skew")
                if srng.random() < 0.2:
                    skew = round(srng.uniform(-self.opt.skew_max_s, self.opt.skew_max_s))
                    if skew:
                        self.stats.skewed_devices[device] = skew
            m = _Meter(
                device,
                topic_for(self.park.id, device),
                regs,
                stream(self.seed, self.park.id, device, "reset"),
                stream(self.seed, self.park.id, device, "replace"),
                stream(self.seed, self.park.id, device, "malformed"),
                stream(self.seed, self.park.id, device, "glitch"),
                skew,
            )
            self.meters[device] = m
        return m

    def _ts(self, sec: int) -> str:
        s = self._ts_cache.get(sec)
        if s is None:
            if len(self._ts_cache) > 4096:
                self._ts_cache.clear()
            s = datetime.fromtimestamp(sec, self.park.tz).isoformat()
            self._ts_cache[sec] = s
        return s

    def _advance(self, m: _Meter, amounts: dict[str, float], prev_t_ns: int) -> bool | None:
        """Add one step's amounts to the registers; returns the reset flag to publish.

        None: no reset. True: announced reset. False: silent meter replacement.
        """
        incs: dict[str, int] = {}
        for name, c in m.counters.items():
            c.phys += amounts.get(name, 0.0)
            new_milli = round(c.phys * MILLI)
            incs[name] = new_milli - c.phys_milli
            c.phys_milli = new_milli
        if self.truth is not None:
            start, end = local_interval(prev_t_ns, self.park.tz, self.park.interval_minutes)
            for name, inc in incs.items():
                self.truth.add(self.park.id, m.device, name, start, end, inc)
        p_step = self.step_s / DAY_S
        flag: bool | None = None
        if self.opt.resets_per_day > 0 and m.reset_rng.random() < self.opt.resets_per_day * p_step:
            flag = True
        replace_now = (
            self.opt.replacements_per_day > 0
            and m.replace_rng.random() < self.opt.replacements_per_day * p_step
        )
        # swapping a meter that reads 0 for a new one is invisible: not a replacement event
        if replace_now and any(c.register > 0 for c in m.counters.values()):
            # a new meter must look "near zero" (≤ 1 % of the old reading) for the collector
            # to recognise it without the flag; otherwise the gateway announces the reset
            silent = all(
                c.register == 0 or incs[n] <= 0.005 * c.register for n, c in m.counters.items()
            )
            flag = not (silent and flag is None)
        if flag is None:
            for name, c in m.counters.items():
                c.register += incs[name]
        else:
            # the new register counts from zero: it shows only this step's energy
            for name, c in m.counters.items():
                c.register = incs[name]
            if flag:
                self.stats.resets += 1
            else:
                self.stats.replacements += 1
        return flag

    def step(
        self, t_ns: int, prev: StepResult | None, now: StepResult, final: bool
    ) -> Iterator[tuple[str, bytes, str | None, int]]:
        """Messages sent at simulated time `t_ns`: (topic, payload, malformed kind, readings)."""
        opt = self.opt
        # at the end of a run the gateway is back online and sends everything it holds
        online = final or t_ns >= self._offline_until_ns
        p_outage = opt.offline_per_day * self.step_s / DAY_S
        if online and not final and p_outage > 0 and self._offline_rng.random() < p_outage:
            minutes = self._offline_rng.uniform(5.0, max(5.0, opt.offline_max_min))
            self._offline_until_ns = t_ns + int(minutes * 60) * NS
            self.stats.outages += 1
            online = False
        if online:
            yield from self._flush_buffer()
        sec = t_ns // NS
        for device, amounts in now.amounts.items():
            m = self._meter(device, list(amounts))
            flag = self._advance(m, prev.amounts[device], prev.t_ns) if prev is not None else None
            obj: dict[str, object] = {"ts": self._ts(sec + m.skew_s)}
            for name, c in m.counters.items():
                obj[name] = c.register / MILLI
            obj.update(now.instant.get(device, {}))
            if flag:
                obj["reset"] = True
            reading = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            if not online:
                self._buffer.append((device, reading))
                continue
            m.pending.append(reading)
            if len(m.pending) >= opt.batch or final:
                yield self._message(m, m.pending)
                m.pending = []
                if opt.malformed_rate > 0 and m.malformed_rng.random() < opt.malformed_rate:
                    yield self._malformed(m, sec)
                p_glitch = opt.glitches_per_day * self.step_s / DAY_S
                if p_glitch > 0 and m.glitch_rng.random() < p_glitch:
                    yield self._glitch(m, sec + m.skew_s)

    def flush(self) -> Iterator[tuple[str, bytes, str | None, int]]:
        """Everything still held (outage buffer, partial batches), e.g. at the end of a run."""
        yield from self._flush_buffer()
        for m in self.meters.values():
            if m.pending:
                yield self._message(m, m.pending)
                m.pending = []

    def _flush_buffer(self) -> Iterator[tuple[str, bytes, str | None, int]]:
        if not self._buffer:
            return
        by_device: dict[str, list[str]] = {}
        for device, reading in self._buffer:
            by_device.setdefault(device, []).append(reading)
        self._buffer = []
        chunk = max(1, self.opt.flush_chunk)
        for device, readings in by_device.items():
            m = self.meters[device]
            # anything batched before the outage goes first, so each device stays in order
            readings = m.pending + readings
            m.pending = []
            for i in range(0, len(readings), chunk):
                yield self._message(m, readings[i : i + chunk], force_array=True)

    def _message(
        self, m: _Meter, readings: list[str], force_array: bool = False
    ) -> tuple[str, bytes, str | None, int]:
        if len(readings) == 1 and not force_array and self.opt.batch == 1:
            body = readings[0]
        else:
            body = "[" + ",".join(readings) + "]"
        return m.topic, body.encode(), None, len(readings)

    def _glitch(self, m: _Meter, sec: int) -> tuple[str, bytes, str | None, int]:
        """A bad reading of the first counter, right after the real one of `sec`: 0, 5 (the
        wrong register), x1000, halfway into the step before; or the same ts, halved."""
        kind = GLITCH_KINDS[m.glitch_rng.randrange(len(GLITCH_KINDS))]
        counter = next(iter(m.counters))
        value = m.counters[counter].register / MILLI
        ts = self._ts(sec - max(1, self.step_s // 2))
        if kind == "glitch_zero":
            bad = 0.0
        elif kind == "glitch_wrong_register":
            bad = 5.0
        elif kind == "glitch_spike":
            bad = value * 1000.0
        else:
            ts, bad = self._ts(sec), value * 0.5
        body = json.dumps({"ts": ts, counter: bad}, separators=(",", ":"))
        self.stats.glitches[kind] = self.stats.glitches.get(kind, 0) + 1
        return m.topic, body.encode(), kind, 1

    def _malformed(self, m: _Meter, sec: int) -> tuple[str, bytes, str | None, int]:
        kind = MALFORMED_KINDS[m.malformed_rng.randrange(len(MALFORMED_KINDS))]
        ts = self._ts(sec)
        counter = next(iter(m.counters))
        topic = m.topic
        if kind == "invalid_json":
            body = f'{{"ts":"{ts}","{counter}":12'  # truncated mid-number
        elif kind == "string_number":
            body = f'{{"ts":"{ts}","{counter}":"{m.counters[counter].register / MILLI}"}}'
        elif kind == "non_finite":
            body = f'{{"ts":"{ts}","power_kw":NaN}}'
        elif kind == "negative_counter":
            body = f'{{"ts":"{ts}","{counter}":-5.0}}'
        elif kind == "unknown_device":
            topic = topic_for(self.park.id, UNKNOWN_DEVICE_ID)
            body = f'{{"ts":"{ts}","energy_import_kwh":1.0}}'
        elif kind == "no_quantities":
            body = f'{{"ts":"{ts}"}}'
        else:  # clock_unset: an RTC that lost its battery starts at the epoch
            body = '{"ts":"1970-01-01T08:00:00+08:00","power_kw":1.0}'
        self.stats.malformed[kind] = self.stats.malformed.get(kind, 0) + 1
        return topic, body.encode(), kind, 0
