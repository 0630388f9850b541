# Long module: one AlarmEngine whose evaluation, lease and outbox steps share per-park state.
"""The alarm engine: samples the live view and storage, applies the rules, keeps the alarm log
in step and delivers notifications. One engine per API process; a lease in the ledger
database makes exactly one of them (the leader) fire, resolve and deliver.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from app.alarms import rules
from app.alarms.notify import BACKOFF_BASE_S, DeliveryError, deliver, retry_at
from app.alarms.rules import Breach, DeviceSeen
from app.alarms.store import AlarmRecord, AlarmStore
from app.config import Settings
from app.live.state import LiveState
from app.registry.alarm_settings import DEFAULT_SETTINGS, AlarmSettings
from app.registry.holder import RegistryHolder
from app.registry.models import Park
from app.storage.base import Storage

log = logging.getLogger(__name__)

_NS_PER_S = 1_000_000_000
#: devices sampled between two yields to the event loop
_SLICE = 500

#: (spooled bytes, backpressured) of the collector in this process, when there is one
BacklogProbe = Callable[[], tuple[int, bool]]
#: the year's evaluation report of a park (docs/evaluation.md), for the projection rule
ReportProbe = Callable[[Park], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """Timings of the engine (defaults for production; tests shorten them)."""

    tick_s: float = 5.0
    #: how often the storage-backed rules (dead letters, flagged intervals) query storage
    slow_every_s: float = 60.0
    #: how often the projection rule runs (it computes the year's evaluation)
    projection_every_s: float = 86_400.0
    lease_ttl_s: float = 30.0
    #: devices per park and slow round whose cadence is looked up in stored history
    history_devices_per_round: int = 200
    backoff_base_s: float = BACKOFF_BASE_S
    smtp_url: str | None = None
    smtp_from: str = "lingtan@localhost"
    http_timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions | None:
        """None when `LINGTAN_ALARMS` is off; timings from LINGTAN_ALARM_TICK_S,
        LINGTAN_ALARM_SLOW_S and LINGTAN_ALARM_BACKOFF_S when set (docs/alarms.md)."""
        if not settings.alarms:
            return None

        def env(name: str, default: float) -> float:
            raw = os.environ.get(name)
            return float(raw) if raw else default

        d = cls()
        return cls(
            tick_s=env("LINGTAN_ALARM_TICK_S", d.tick_s),
            slow_every_s=env("LINGTAN_ALARM_SLOW_S", d.slow_every_s),
            backoff_base_s=env("LINGTAN_ALARM_BACKOFF_S", d.backoff_base_s),
            lease_ttl_s=env("LINGTAN_ALARM_LEASE_S", d.lease_ttl_s),
            smtp_url=settings.smtp_url.get_secret_value() if settings.smtp_url else None,
            smtp_from=settings.smtp_from,
        )


def park_settings(park: Park) -> AlarmSettings:
    return park.alarms or DEFAULT_SETTINGS


@dataclass
class AlarmView:
    """Open alarms per park as last read from the log (every replica keeps one), with a
    version per park that changes whenever the list does (for the SSE stream)."""

    active: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def update(self, records: list[AlarmRecord]) -> list[str]:
        """Install the open alarms; returns the parks whose list changed."""
        by_park: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            by_park.setdefault(r.park, []).append(r.model_dump(mode="json"))
        changed = []
        for park in set(by_park) | set(self.active):
            new = by_park.get(park, [])
            if new != self.active.get(park, []):
                self.versions[park] = self.versions.get(park, 0) + 1
                changed.append(park)
        self.active = by_park
        return changed

    def of(self, park: str) -> list[dict[str, Any]]:
        return self.active.get(park, [])

    def version(self, park: str) -> int:
        return self.versions.get(park, 0)

    def json_of(self, park: str) -> bytes:
        return json.dumps(self.of(park), separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class _ParkState:
    sustained: dict[tuple[str, str], int] = field(default_factory=dict)
    slow: list[Breach] = field(default_factory=list)
    slow_at: float = -1e18
    projection: list[Breach] = field(default_factory=list)
    projection_at: float = -1e18


class AlarmEngine:
    """Run it as a task (`await engine.run()`); `evaluate()` is one round, for tests too."""

    def __init__(
        self,
        store: AlarmStore,
        registry: RegistryHolder,
        live: LiveState,
        storage: Storage,
        *,
        options: EngineOptions | None = None,
        view: AlarmView | None = None,
        backlog: BacklogProbe | None = None,
        report: ReportProbe | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.store = store
        self.registry = registry
        self.live = live
        self.storage = storage
        self.options = options or EngineOptions()
        self.view = view or AlarmView()
        self.backlog = backlog
        self.report = report
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leader = False
        self._seen: dict[tuple[str, str], DeviceSeen] = {}
        self._gaps: dict[tuple[str, str], tuple[float, ...]] = {}
        #: median of `_gaps` once there are enough of them (rules.MIN_GAPS)
        self._learned: dict[tuple[str, str], float] = {}
        self._parks: dict[str, _ParkState] = {}
        self._storage_down_since: int | None = None
        #: (park, rule, subject) whose state cannot be told this round: left as they are
        self._unknown: set[tuple[str, str, str]] = set()
        self._client: httpx.AsyncClient | None = None

    # -- what other parts read ---------------------------------------------------------------

    @property
    def storage_up(self) -> bool:
        """Whether the time-series store answered the engine's last ping."""
        return self._storage_down_since is None

    def cadence(self, park: Park, device: str) -> float | None:
        """The device's cadence in seconds: set, learned or default (rules.cadence_s)."""
        gaps = self._gaps.get((park.id, device), ())
        return rules.cadence_s(device, gaps, park_settings(park))[0]

    def _learn(self, key: tuple[str, str], gaps: tuple[float, ...]) -> None:
        self._gaps[key] = gaps
        if len(gaps) >= rules.MIN_GAPS:
            self._learned[key] = statistics.median(gaps)

    def cadences(self, park: Park) -> dict[str, float | None]:
        return {d.id: self.cadence(park, d.id) for d in park.devices}

    # -- one round ----------------------------------------------------------------------------

    async def _sample(self, park: Park) -> dict[str, DeviceSeen | None]:
        """Latest reading per device from the live view; learns cadences on the way. Yields
        to the event loop every _SLICE devices (a 5,000-device park is ~70 ms of Python when
        every device has a new reading)."""
        seen: dict[str, DeviceSeen | None] = {}
        pid, last, device_of = park.id, self._seen, self.live.device
        # hot loop (every device, every tick): a new DeviceSeen only for a new reading
        for i, device in enumerate(park.devices):
            if i and not i % _SLICE:
                await asyncio.sleep(0)
            did = device.id
            d = device_of(pid, did)
            if d is None:
                seen[did] = None
                continue
            key = (pid, did)
            prev = last.get(key)
            if prev is not None and prev.ts_ns == d.ts_ns:
                seen[did] = prev
                continue
            new = DeviceSeen(d.ts_ns, d.received_ns)
            self._learn(key, rules.learn_gap(self._gaps.get(key, ()), prev, new))
            last[key] = new
            seen[did] = new
        return seen

    async def _ping(self, now_ns: int) -> None:
        try:
            ok = await asyncio.wait_for(self.storage.ping(), timeout=2.0)
        except Exception:
            ok = False
        if ok:
            self._storage_down_since = None
        elif self._storage_down_since is None:
            self._storage_down_since = now_ns

    async def _learn_from_history(self, park: Park, now_ns: int) -> None:
        """Cadences of devices not learned live yet, from their last stored readings (a few
        devices per round, so a big park does not stall the engine)."""
        todo = [
            d.id
            for d in park.devices
            if len(self._gaps.get((park.id, d.id), ())) < rules.MIN_GAPS
            and d.id not in park_settings(park).device_cadence_s
        ][: self.options.history_devices_per_round]
        for device in todo:
            readings = await self.storage.last_readings(
                park.id, device, now_ns + 1, rules.MAX_GAPS + 1
            )
            gaps = rules.gaps_from_history([r.ts_ns for r in readings])
            if len(gaps) >= rules.MIN_GAPS:
                self._learn((park.id, device), gaps)

    async def _slow(self, park: Park, cfg: AlarmSettings, now_ns: int) -> list[Breach]:
        """Dead letters and flagged intervals, from storage (kept between queries), and the
        cadences still unknown from stored history."""
        st = self._parks.setdefault(park.id, _ParkState())
        mono = time.monotonic()
        if mono - st.slow_at < self.options.slow_every_s:
            return st.slow
        try:
            await self._learn_from_history(park, now_ns)
            found: list[Breach] = []
            if cfg.dead_letters_per_5min:
                letters = await self.storage.deadletters(
                    park.id, now_ns - 300 * _NS_PER_S, now_ns, limit=cfg.dead_letters_per_5min + 1
                )
                found += rules.dead_letters(len(letters), cfg.dead_letters_per_5min)
            if cfg.flagged_interval_share:
                intervals = await self.storage.intervals(park.id, now_ns - 3600 * _NS_PER_S, now_ns)
                flags: dict[str, list[tuple[str, ...]]] = {}
                for i in intervals:
                    flags.setdefault(i.device, []).append(i.flags)
                found += rules.flagged_intervals(flags, cfg.flagged_interval_share)
        except Exception as exc:  # storage down: keep what we knew (storage_unreachable says so)
            log.debug("alarm storage rules of %s not refreshed: %s", park.id, exc)
            return st.slow
        st.slow, st.slow_at = found, mono
        return found

    async def _projection(self, park: Park, cfg: AlarmSettings) -> list[Breach]:
        st = self._parks.setdefault(park.id, _ParkState())
        if self.report is None or not cfg.projection_check:
            return []
        mono = time.monotonic()
        if mono - st.projection_at < self.options.projection_every_s:
            return st.projection
        try:
            doc = await self.report(park)
        except Exception as exc:
            log.info("alarm projection check of %s skipped: %s", park.id, exc)
            return st.projection
        st.projection = rules.projection_off_target(doc, cfg.projection_min_coverage)
        st.projection_at = mono
        return st.projection

    async def breaches(self, park: Park, now_ns: int) -> list[Breach]:
        """Everything that holds for `park` now (live thresholds only after their window)."""
        cfg = park_settings(park)
        seen = await self._sample(park)
        if not cfg.enabled:
            return []
        st = self._parks.setdefault(park.id, _ParkState())
        # rules.cadence_s, with the learned medians kept between rounds
        pid, fixed, learned, default = (
            park.id,
            cfg.device_cadence_s,
            self._learned,
            cfg.default_cadence_s,
        )
        cadences = {d: fixed[d] if d in fixed else learned.get((pid, d), default) for d in seen}
        # no reading since start or no cadence: an open device_offline alarm stays as it is
        self._unknown.update(
            (park.id, rules.DEVICE_OFFLINE, d)
            for d, last in seen.items()
            if last is None or cadences[d] is None
        )
        found = rules.device_offline(now_ns, seen, cadences, cfg.offline_grace_s)
        found += rules.storage_unreachable(
            self._storage_down_since, now_ns, cfg.storage_unreachable_s
        )
        if self.backlog is not None:
            found += rules.collector_backlog(*self.backlog())
        doc: dict[str, Any] = {}
        if (
            cfg.green_share_min is not None
            or cfg.emission_rate_max_kg_per_h is not None
            or cfg.carbon_intensity_max_g_per_kwh is not None
        ):  # a render costs milliseconds on a big park: only when a threshold needs it
            try:
                doc = self.live.document(park.id)
            except KeyError:
                doc = {}
        st.sustained, ready = rules.sustained(
            st.sustained, rules.live_thresholds(doc, cfg), now_ns, cfg.window_s
        )
        found += ready
        found += await self._slow(park, cfg, now_ns)
        found += await self._projection(park, cfg)
        return found

    async def evaluate(self) -> None:
        """One round: sample, apply the rules and (as leader) fire, resolve and deliver."""
        now_ns = self.clock()
        now = datetime.fromtimestamp(now_ns / _NS_PER_S, tz=UTC)
        await self._ping(now_ns)
        self.leader = await asyncio.to_thread(
            self.store.acquire_lease, self.holder, self.options.lease_ttl_s, "engine", now
        )
        parks = self.registry.registry.parks
        self._unknown = set()
        found = {p.id: await self.breaches(p, now_ns) for p in parks}
        if self.leader:
            open_alarms = await asyncio.to_thread(self.store.open_alarms)
            await asyncio.to_thread(self._apply, parks, found, open_alarms, now)
            await self.deliver_due()
        self.view.update(await asyncio.to_thread(self.store.open_alarms))

    def _apply(
        self,
        parks: tuple[Park, ...],
        found: Mapping[str, list[Breach]],
        open_alarms: list[AlarmRecord],
        now: datetime,
    ) -> None:
        by_park: dict[str, list[tuple[str, str]]] = {}
        for a in open_alarms:
            by_park.setdefault(a.park, []).append((a.rule, a.subject))
        known = {p.id for p in parks}
        for park in parks:
            cfg = park_settings(park)
            fire, resolve = rules.transitions(
                by_park.get(park.id, []), found.get(park.id, []), rules.RULES
            )
            for breach in fire:
                rec = self.store.fire(park.id, breach, cfg.channels, now)
                if rec is not None:
                    log.warning("alarm fired: %s %s %s", park.id, breach.rule, breach.subject)
            for rule, subject in resolve:
                if (park.id, rule, subject) in self._unknown:
                    continue
                if self.store.resolve(park.id, rule, subject, cfg.channels, now) is not None:
                    log.warning("alarm resolved: %s %s %s", park.id, rule, subject)
            self.store.queue_repeats(park.id, cfg.repeat_s, cfg.channels, now)
        for park_id in set(by_park) - known:  # a park left the registry: close its alarms
            for rule, subject in by_park[park_id]:
                self.store.resolve(park_id, rule, subject, (), now)

    async def deliver_due(self) -> int:
        """Send every due notification once; returns how many were delivered."""
        due = await asyncio.to_thread(self.store.due_notifications)
        if not due:
            return 0
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.options.http_timeout_s)
        sent = 0
        for n in due:
            try:
                await deliver(
                    self._client,
                    n.channel,
                    n.alarm,
                    n.event,
                    smtp_url=self.options.smtp_url,
                    smtp_from=self.options.smtp_from,
                )
            except DeliveryError as exc:
                when = retry_at(datetime.now(UTC), n.attempts + 1, self.options.backoff_base_s)
                log.warning("alarm notification %d (%s) failed: %s", n.id, n.channel.kind, exc)
                await asyncio.to_thread(self.store.mark_failed, n.id, str(exc), when)
            else:
                await asyncio.to_thread(self.store.mark_sent, n.id)
                sent += 1
        return sent

    async def run(self) -> None:
        """Evaluate every `tick_s` until cancelled (errors are logged, the loop goes on)."""
        try:
            while True:
                try:
                    await self.evaluate()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("alarm round failed")
                await asyncio.sleep(self.options.tick_s)
        finally:
            if self.leader:
                try:
                    await asyncio.to_thread(self.store.release_lease, self.holder)
                except Exception:
                    log.debug("alarm lease not released", exc_info=True)
            if self._client is not None:
                await self._client.aclose()


@dataclass
class Alarms:
    """What the API keeps of alarms: the log, the open alarms per park and, in processes
    that run one, the engine."""

    store: AlarmStore
    view: AlarmView = field(default_factory=AlarmView)
    engine: AlarmEngine | None = None
