# Long module: the Collector's batch, write, ack and replay steps share one ordering invariant.
"""Ingest pipeline: decode each message, batch, derive interval energies, make durable, ack.

A message is acknowledged (its handler returns, or its PUBACK is sent with the rest of its
batch) only after the batch holding its readings, interval energies and dead letters has
been written to storage or committed to the on-disk spool. Batches are flushed one at a
time, in arrival order, so a later recomputation of an interval always overwrites an
earlier one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from app.intervals import IntervalEngine, compute_window, history_start_ns, interval_start_ns
from app.intervals.align import NS_PER_DAY
from app.intervals.models import IntervalEnergy
from app.registry.models import Park, Registry
from app.storage.base import FAR_NS, History, Storage, StorageUnavailable, WriteBatch
from app.storage.spool import DurableWriter
from app.telemetry.decode import DecodeLimits
from app.telemetry.formats import FormatResult, GatewayDecoder
from app.telemetry.formats.sparkplug import SparkplugFormat
from app.telemetry.models import DeadLetter, Reading, RejectReason
from collectors.format_metrics import FormatMetrics
from collectors.format_state import FormatState
from collectors.metrics import CollectorMetrics
from collectors.soc import SocTracker

log = logging.getLogger(__name__)

#: How long a counter that stopped reporting is held at most (the engine is compact: it holds
#: per device only what the next reading needs, docs/intervals.md "Collector memory"), and
#: how long the conflict flags of refused readings are kept for recomputed intervals.
HISTORY_LOOKBACK_S = 2 * 86_400
#: After storage failed to answer a history lookup, don't ask again for this long.
HISTORY_RETRY_S = 5.0
#: How often to retry deferred repairs while no telemetry arrives.
REPAIR_POLL_S = 2.0
#: A reading without ts whose device and content equal one stamped less than this long ago
#: is the same message redelivered (a QoS 1 resend, a retained message on reconnect): it
#: keeps the first arrival time instead of becoming a new reading (docs/intervals.md). Short
#: enough that a device sending the same ts-less content each minute still yields a reading
#: every 10 minutes, well inside the 1.5-interval gap limit.
TSLESS_DEDUPE_S = 600
_TSLESS_MAX = 200_000  # remembered ts-less readings at most (oldest forgotten first)
#: up to this many devices loaded together, their stored intervals are read one by one
_ONE_BY_ONE = 16

_Content = tuple[str, str, tuple[tuple[str, float], ...], bool]


def _content(r: Reading) -> _Content:
    return (r.park, r.device, tuple(sorted(r.values.items())), r.reset)


def _conflict_record(r: Reading, detail: str, received_ns: int) -> DeadLetter:
    """A reading refused because another with the same device and ts was there first."""
    doc: dict[str, object] = {"ts_ns": r.ts_ns, **r.values}
    if r.reset:
        doc["reset"] = True
    if r.ts_source != "device":
        doc["ts_source"] = r.ts_source
    at = datetime.fromtimestamp(r.ts_ns // 1_000_000_000, UTC).isoformat()
    return DeadLetter(
        received_ns,
        f"lingtan/v1/{r.park}/{r.device}/telemetry",
        r.park,
        r.device,
        RejectReason.CONFLICT,
        f"ts {at}: {detail}",
        json.dumps(doc, separators=(",", ":")).encode(),
    )


def _reaches(stored: list[Reading], start_ns: int, first_ns: int, park: Park | None) -> bool:
    """Whether a loaded history lets the engine know exactly every interval a reading at
    `first_ns` can change: from the interval of the predecessor of its predecessor on,
    which needs the history's second reading at or before that interval's start (the first
    one's glitch decision needs a reading before it; docs/intervals.md)."""
    if park is None or not stored or stored[0].ts_ns >= start_ns:
        return True  # nothing stored before: the whole history is loaded
    before = [r.ts_ns for r in stored if r.ts_ns < first_ns]
    if len(stored) < 2 or not before:
        return len(stored) < 2 and not before
    anchor = before[-2] if len(before) > 1 else before[-1]
    return stored[1].ts_ns <= interval_start_ns(anchor, park)


def _differs(
    first: dict[str, tuple[float, bool]], values: dict[str, float], reset: bool
) -> str | None:
    """What of a reading's values contradicts `first` (name -> (value, reset)), if anything."""
    for name, (value, first_reset) in first.items():
        if name in values and (values[name] != value or (first_reset != reset)):
            other = f"{values[name]!r}{' reset' if reset else ''}"
            was = f"{value!r}{' reset' if first_reset else ''}"
            return f"{name} {other} differs from the first {was} (the first stays)"
    return None


def _all_stored(batch: list[Reading], stored: list[Reading], before_ns: int) -> bool:
    """Whether every reading of `batch` before `before_ns` has a stored reading at its ts with
    (at least) its quantities: then it changes no interval (the first value stays, an equal
    one is idempotent, another is refused as a conflict)."""
    held = {r.ts_ns: r.values for r in stored}
    for r in batch:
        if r.ts_ns < before_ns:
            values = held.get(r.ts_ns)
            if values is None or not values.keys() >= r.values.keys():
                return False
    return True


def _overwrite(first: list[IntervalEnergy], then: list[IntervalEnergy]) -> list[IntervalEnergy]:
    """`first` with any interval also in `then` replaced by the `then` version."""
    key = {(i.park, i.device, i.start_ns): i for i in first}
    for i in then:
        key[(i.park, i.device, i.start_ns)] = i
    return list(key.values())


class Acker(Protocol):
    """Acknowledges messages by id, in the order given (e.g. MQTT PUBACKs of one connection)."""

    def ack(self, mids: Sequence[int]) -> None: ...


@dataclass(slots=True)
class _Queue:
    """Messages taken since the last flush: their content, and who waits for it to be durable."""

    readings: list[Reading] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    messages: int = 0
    #: `handle` callers, resolved when the batch is durable
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    #: `submit`ted message ids in arrival order, grouped by consecutive acker
    acks: list[tuple[Acker, list[int]]] = field(default_factory=list)


class Collector:
    """Turns MQTT messages into durable readings, interval energies and dead letters."""

    def __init__(
        self,
        registry: Registry,
        writer: DurableWriter,
        history: Storage | None,
        *,
        metrics: CollectorMetrics | None = None,
        batch_max_items: int = 5000,
        batch_max_wait_s: float = 0.1,
        max_unacked_messages: int = 2048,
        limits: DecodeLimits | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        on_readings: Callable[[list[Reading]], object] | None = None,
        on_intervals: Callable[[list[IntervalEnergy]], object] | None = None,
        on_failure: Callable[[], object] | None = None,
        on_command: Callable[[str, bytes, int], object] | None = None,
        state_path: Path | None = None,
        compact_engine: bool = True,
    ) -> None:
        self.registry = registry
        #: True: the compact engine (bounded memory, docs/intervals.md "Collector memory").
        #: False: the engine holds the whole lookback window in memory, as before; same
        #: results, memory growing with it (kept for comparisons: bench, tests)
        self.compact_engine = compact_engine
        #: every gateway format (docs/gateways.md); the native JSON is one of them
        self.decoder = GatewayDecoder(registry, limits)
        self.writer = writer
        self.history = history
        self.metrics = metrics or CollectorMetrics()
        self.batch_max_items = batch_max_items
        self.batch_max_wait_s = batch_max_wait_s
        # the broker stops sending once the client's receive window is full of unacked
        # messages, so waiting for a bigger batch than that would only add idle time
        self.max_unacked_messages = max_unacked_messages
        self.clock_ns = clock_ns
        self.on_readings = on_readings
        self.on_intervals = on_intervals
        self.on_failure = on_failure
        #: publishes what a format sends back to a gateway (topic, payload, QoS)
        self.on_command = on_command
        self.format_metrics = FormatMetrics(self.metrics.registry)
        sparkplug = self.decoder.formats["sparkplug"]
        #: Sparkplug aliases kept across restarts (None: in memory only)
        self.format_state: FormatState | None = None
        if isinstance(sparkplug, SparkplugFormat):  # counted when scraped, not per message
            self.format_metrics.offline.set_function(lambda: len(sparkplug.offline()))
            if state_path is not None:
                self.format_state = FormatState(state_path, sparkplug)
                self.format_state.load()
        self.engine = self._new_engine()
        self.soc = SocTracker(registry)
        self._history_down_until = 0.0
        self._replayed_at_failure = 0
        #: devices whose intervals around a time must be recomputed from storage later
        self._deferred: dict[tuple[str, str], int] = {}
        self._queue = _Queue()
        self._has_items = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: an edited registry waiting for the next flush, with the devices to forget
        self._next_registry: tuple[Registry, set[tuple[str, str]]] | None = None
        #: recent ts-less readings by content -> the arrival time they were stored at
        self._tsless: OrderedDict[_Content, int] = OrderedDict()
        #: stored readings loaded for this batch's late devices (checked for conflicts)
        self._loaded: dict[tuple[str, str], list[Reading]] = {}

    def _new_engine(self) -> IntervalEngine:
        # looked up through self, so the engine follows registry edits
        return IntervalEngine(
            lambda park: self.registry.park(park),
            history_window_s=HISTORY_LOOKBACK_S,
            compact=self.compact_engine,
        )

    def set_registry(self, registry: Registry, stale: Iterable[tuple[str, str]] = ()) -> None:
        """Switch to an edited registry. Messages are decoded against it from now on; the
        interval engine switches before the next batch (never in the middle of one) and
        forgets the `stale` devices (edited or removed), which then restart from their
        stored history like after a restart."""
        self.decoder.registry = registry
        forget = set(stale)
        if self._next_registry is not None:
            forget |= self._next_registry[1]
        self._next_registry = (registry, forget)
        self._has_items.set()  # apply it soon even when no telemetry arrives

    def _apply_registry(self) -> None:
        if self._next_registry is None:
            return
        registry, forget = self._next_registry
        self._next_registry = None
        self.registry = registry
        self.soc.registry = registry
        for park, device in forget:
            self.engine.forget(park, device)

    # -- MQTT side ---------------------------------------------------------------------

    async def handle(self, topic: str, payload: bytes) -> None:
        """MQTT message handler: returns once the message's content is durable."""
        queue = self._take(topic, payload)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.waiters.append(done)
        await done

    def submit(self, topic: str, payload: bytes, acker: Acker, mid: int) -> None:
        """Take a message now; `acker.ack` gets its id once the message's content is durable.

        The cheap way in for a QoS 1 stream: no future or task per message, and one ack call
        per batch. If the batch cannot be made durable, the id is never acked.
        """
        acks = self._take(topic, payload).acks
        if acks and acks[-1][0] is acker:
            acks[-1][1].append(mid)
        else:
            acks.append((acker, [mid]))

    def _take(self, topic: str, payload: bytes) -> _Queue:
        queue = self._queue
        now_ns = self.clock_ns()
        plain = self.decoder.plain(topic, payload, now_ns)
        if plain is not None:  # the common case, with no per-message result objects
            queue.readings += plain
        else:
            # the format that reads the topic; one nobody reads is a bad_topic dead letter
            decoded = self.decoder.decode(topic, payload, now_ns)
            if decoded.ignored_fields:
                self.metrics.ignored_fields.inc(decoded.ignored_fields)
            if decoded.format != "native":
                self._gateway(decoded)
            queue.readings += decoded.readings
            queue.deadletters += decoded.deadletters
        queue.messages += 1
        self._has_items.set()
        if (
            len(queue.readings) + len(queue.deadletters) >= self.batch_max_items
            or queue.messages >= self.max_unacked_messages
        ):
            self._full.set()
        return queue

    def _gateway(self, decoded: FormatResult) -> None:
        """Per-format counters, and what a gateway format sends back (rebirth requests)."""
        fm = self.format_metrics
        name = decoded.format
        fm.messages.labels(name).inc()
        fm.readings.labels(name).inc(len(decoded.readings))
        for dl in decoded.deadletters:
            fm.rejected.labels(name, dl.reason.value).inc()
        if decoded.unmapped:
            fm.unmapped.labels(name).inc()
        if decoded.seq_gaps:
            fm.seq_gaps.inc(decoded.seq_gaps)
            log.info("sparkplug: %d seq number(s) missed before a message", decoded.seq_gaps)
        for cmd in decoded.commands:
            if "/NCMD/" in cmd.topic:  # Sparkplug's only command from us: a rebirth request
                fm.rebirths.inc()
            if self.on_command is not None:
                self.on_command(cmd.topic, cmd.payload, cmd.qos)

    # -- flushing ----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lingtan-collector-flush")

    async def _run(self) -> None:
        while True:
            if self._deferred:
                # repairs are pending: wake up now and then even without new telemetry
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._has_items.wait(), REPAIR_POLL_S)
            else:
                await self._has_items.wait()
            if not self._full.is_set() and self.batch_max_wait_s > 0:
                # idle until now: give a burst a moment to fill the batch
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.batch_max_wait_s)
            queue, self._queue = self._queue, _Queue()
            self._has_items.clear()
            self._full.clear()
            # counted per batch: a Prometheus counter's lock per message costs ~1 µs each
            self.metrics.messages.inc(queue.messages)
            await self._flush(queue)
            if self._stopping and not self._queue.messages:
                return

    async def _flush(self, queue: _Queue) -> None:
        self._apply_registry()
        readings = queue.readings
        deadletters = queue.deadletters
        if not readings and not deadletters and not self._repair_due():
            if self.format_state is not None:  # e.g. a DEATH: nothing to write but the state
                self.format_state.save_if_changed()
            self._acknowledge(queue)
            return
        try:
            recomputed = await self._prepare(readings)
            readings, refused = self._screen(readings)
            if refused:
                deadletters = [*deadletters, *refused]
            self.soc.add(readings)
            conflicts = [
                (dl.park, dl.device, int(json.loads(dl.raw)["ts_ns"]))
                for dl in refused
                if dl.park is not None and dl.device is not None
            ]
            # the conflicts go in with the batch: flagged before a compact engine forgets the
            # intervals the batch filled (storage does not hold those yet)
            intervals = self.engine.add(readings, conflicts)
            if recomputed:
                intervals = _overwrite(intervals, recomputed)
            if conflicts:
                emitted = {(i.park, i.device, i.start_ns) for i in intervals}
                for park_id, device, ts_ns in conflicts:
                    park = self.registry.park(park_id)
                    if park is None:
                        continue
                    if (park_id, device, interval_start_ns(ts_ns, park)) not in emitted:
                        # an interval the engine no longer holds: flag the stored row
                        stored = await self._stored_conflict(park_id, device, ts_ns)
                        intervals = _overwrite(intervals, stored)
            if conflicts or recomputed:  # recomputed ones keep the conflicts the engine holds
                intervals = self.engine.with_conflicts(intervals)
            intervals = self.soc.stamp(intervals)
            batch = WriteBatch(readings=readings, intervals=intervals, deadletters=deadletters)
            started = time.perf_counter()
            spooled_before = self.writer.spooled_batches
            await self.writer.write(batch)
            self.metrics.write_latency.observe(time.perf_counter() - started)
        except Exception as exc:
            # Nothing of this batch is acked, so the broker redelivers it. The engine already
            # saw these readings; forget its state so the redelivery recomputes the intervals.
            log.exception("batch of %d readings could not be made durable", len(readings))
            self.engine = self._new_engine()
            for waiter in queue.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            if self.on_failure is not None:
                self.on_failure()  # e.g. reconnect, so the broker redelivers what was not acked
            return
        self._count(
            readings, deadletters, intervals, spooled=self.writer.spooled_batches > spooled_before
        )
        if self.format_state is not None:
            self.format_state.save_if_changed()
        if self.on_readings and readings:
            self.on_readings(readings)
        if self.on_intervals and intervals:
            self.on_intervals(intervals)
        self._acknowledge(queue)

    def _screen(self, readings: list[Reading]) -> tuple[list[Reading], list[DeadLetter]]:
        """Drop redelivered ts-less readings; turn conflicting duplicates into conflict records.

        Same device and ts as a reading held (by the engine, loaded from storage, or earlier
        in this batch) with another value for a shared field: the first stays, this one is
        kept as a `conflict` dead letter. The same values again stay idempotent.
        """
        kept: list[Reading] = []
        refused: list[DeadLetter] = []
        now_ns = self.clock_ns()
        # per (park, device, ts) in this batch: the first reading, or once a second one came,
        # the values (and reset marks) held first
        in_batch: dict[tuple[str, str, int], Reading | dict[str, tuple[float, bool]]] = {}
        loaded = self._loaded
        self._loaded = {}
        stored_at: dict[tuple[str, str, int], Reading] = {}
        for key, stored in loaded.items():
            for r in stored:
                stored_at[(key[0], key[1], r.ts_ns)] = r
        held_at = self.engine.held
        for r in readings:
            if r.ts_source == "collector" and not self._fresh_tsless(r):
                self.metrics.tsless_redeliveries.inc()
                continue
            at = (r.park, r.device, r.ts_ns)
            first = held_at(r.park, r.device, r.ts_ns)
            old = stored_at.get(at) if stored_at else None
            earlier = in_batch.get(at)
            if not first and old is None and earlier is None:
                in_batch[at] = r  # the common case: the first time this batch sees it
                kept.append(r)
                continue
            if old is not None:
                first.update({n: (v, old.reset) for n, v in old.values.items()})
            if isinstance(earlier, Reading):
                earlier = in_batch[at] = {n: (v, earlier.reset) for n, v in earlier.values.items()}
            if earlier is not None:
                first.update(earlier)
            detail = _differs(first, r.values, r.reset) if first else None
            if detail is not None:
                refused.append(_conflict_record(r, detail, now_ns))
                continue
            mine = {n: (v, r.reset) for n, v in r.values.items()}
            if earlier is None:
                in_batch[at] = mine
            else:
                for name, held in mine.items():
                    earlier.setdefault(name, held)
            kept.append(r)
        return kept, refused

    def _fresh_tsless(self, r: Reading) -> bool:
        """Remember a ts-less reading; False if the same content was stored moments ago."""
        content = _content(r)
        window = TSLESS_DEDUPE_S * 1_000_000_000
        seen = self._tsless.get(content)
        if seen is not None and 0 <= r.ts_ns - seen <= window:
            return False
        self._remember_tsless(content, r.ts_ns)
        return True

    def _remember_tsless(self, content: _Content, ts_ns: int) -> None:
        tsless = self._tsless
        tsless[content] = ts_ns
        tsless.move_to_end(content)
        window = TSLESS_DEDUPE_S * 1_000_000_000
        while tsless:
            oldest_content, oldest = next(iter(tsless.items()))
            if len(tsless) <= _TSLESS_MAX and ts_ns - oldest <= window:
                break
            del tsless[oldest_content]

    @staticmethod
    def _acknowledge(queue: _Queue) -> None:
        """The batch is durable: ack its messages (in arrival order) and wake its waiters."""
        for acker, mids in queue.acks:
            acker.ack(mids)
        for waiter in queue.waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _count(
        self,
        readings: list[Reading],
        deadletters: list[DeadLetter],
        intervals: list[IntervalEnergy],
        *,
        spooled: bool,
    ) -> None:
        m = self.metrics
        m.batches.inc()
        m.readings.inc(len(readings))
        m.intervals.inc(len(intervals))
        for dl in deadletters:
            m.rejected.labels(dl.reason.value).inc()
        (m.spooled if spooled else m.written).inc()
        m.last_durable.set_to_current_time()

    async def _prepare(self, readings: list[Reading]) -> list[IntervalEnergy]:
        """Bring the engine's history up to what this batch needs; recompute late windows.

        Returns intervals recomputed from storage (late readings beyond the engine's history,
        deferred repairs) that must overwrite what the engine emits for the same intervals.
        """
        self._loaded = {}
        unknown, late = self._unknown_and_late(readings)
        # repairs deferred while storage was down run once the spool has drained into it
        if self._repair_due():
            for key, ts in self._deferred.items():
                late[key] = min(ts, late.get(key, ts))
            self._deferred = {}
        if not unknown and not late:
            return []
        if self.history is None:
            return []
        if not self._history_up():
            self._defer(unknown, late, readings)
            return []
        keys = list({**unknown, **late})
        firsts = {key: unknown.get(key, late.get(key, 0)) for key in keys}
        stored_by_park = await self._load_histories(firsts)
        if stored_by_park is None:
            self._history_failed()
            self.metrics.history_misses.inc(len(keys))
            log.warning("storage unavailable: %d devices' history deferred", len(keys))
            self._defer(unknown, late, readings)
            return []
        recomputed = self._apply_histories(keys, unknown, late, stored_by_park, readings)
        await self._restore_stored_conflicts(keys, stored_by_park)
        return recomputed

    async def _restore_stored_conflicts(
        self, keys: list[tuple[str, str]], stored_by_park: dict[str, dict[str, History]]
    ) -> None:
        """Give the engine back the `conflict` marks of the stored intervals of the devices
        whose history was just loaded (after a restart it holds none; a late device's may
        have aged out): a refused conflicting reading stays refused however often its
        interval is written again (docs/intervals.md §3). One query per park for the many
        devices a restart loads from about the same time, one per device otherwise; when
        storage cannot answer now, the engine's own marks are all there is."""
        history = self.history
        assert history is not None
        starts: dict[str, dict[str, int]] = {}
        for park_id, device in keys:
            start_ns, stored = stored_by_park[park_id][device]
            # no reading stored from there on: no interval either (raw readings are pruned
            # only long after their intervals were written, docs/storage.md)
            if stored:
                starts.setdefault(park_id, {})[device] = start_ns
        try:
            for park_id, by_device in starts.items():
                newest = max(by_device.values())
                together = [d for d, lo in by_device.items() if lo >= newest - NS_PER_DAY]
                if len(together) <= _ONE_BY_ONE:
                    together = []
                queries: list[tuple[int, str | None]] = [
                    (lo, d) for d, lo in by_device.items() if d not in together
                ]
                if together:
                    queries.append((min(by_device[d] for d in together), None))
                wanted = set(by_device)
                for lo, only in queries:
                    rows = await history.intervals(park_id, lo, FAR_NS, only)
                    for r in rows:
                        if "conflict" in r.flags and r.device in wanted:
                            self.engine.restore_conflict(park_id, r.device, r.start_ns)
        except StorageUnavailable:
            log.warning("storage unavailable: stored conflict flags not reloaded")

    def _unknown_and_late(
        self, readings: list[Reading]
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """The batch's first reading time per device the engine has no history of (unknown),
        and per device whose first reading lies before the engine's horizon (late)."""
        first_ts: dict[tuple[str, str], int] = {}
        for r in readings:
            key = (r.park, r.device)
            if key not in first_ts or r.ts_ns < first_ts[key]:
                first_ts[key] = r.ts_ns
        unknown: dict[tuple[str, str], int] = {}
        late: dict[tuple[str, str], int] = {}
        for key, ts in first_ts.items():
            horizon = self.engine.horizon(*key)
            if horizon is None:
                unknown[key] = ts
            elif ts < horizon:
                late[key] = ts
        return unknown, late

    async def _load_histories(
        self, firsts: dict[tuple[str, str], int]
    ) -> dict[str, dict[str, History]] | None:
        """Stored history of each device reaching back before its first reading `firsts`;
        None when storage is unavailable."""
        by_park: dict[str, dict[str, int]] = {}
        for key, first in firsts.items():
            by_park.setdefault(key[0], {})[key[1]] = first
        stored_by_park = await self._fetch_histories(by_park)
        if stored_by_park is None:
            return None
        # a sparse device (fewer than two readings in the loaded interval lengths before
        # its last one) needs history from further back: one more lookup for just those
        further: dict[str, dict[str, int]] = {}
        for key, first in firsts.items():
            start_ns, stored = stored_by_park[key[0]][key[1]]
            if not _reaches(stored, start_ns, first, self.registry.park(key[0])):
                further.setdefault(key[0], {})[key[1]] = stored[0].ts_ns
        if not further:
            return stored_by_park
        more = await self._fetch_histories(further)
        if more is None:
            return None
        for park_id, found in more.items():
            loaded = stored_by_park[park_id]
            for device, (start2, stored2) in found.items():
                if stored2:
                    loaded[device] = (start2, stored2)
                else:  # nothing before the first loaded reading: it is all
                    old = loaded[device][1]
                    loaded[device] = (old[0].ts_ns, old)
        return stored_by_park

    def _apply_histories(
        self,
        keys: list[tuple[str, str]],
        unknown: dict[tuple[str, str], int],
        late: dict[tuple[str, str], int],
        stored_by_park: dict[str, dict[str, History]],
        readings: list[Reading],
    ) -> list[IntervalEnergy]:
        """Seed the engine with the history of unknown devices; recompute the windows of
        late ones (and of seeded ones whose batch reaches before the seeded horizon) from
        storage plus this batch (what must overwrite the engine's output)."""
        recomputed: list[IntervalEnergy] = []
        batch_by_device: dict[tuple[str, str], list[Reading]] = {}
        for r in readings:
            if (r.park, r.device) in late or (r.park, r.device) in unknown:
                batch_by_device.setdefault((r.park, r.device), []).append(r)
        for key in keys:
            start_ns, stored = stored_by_park[key[0]][key[1]]
            self.soc.add(stored)
            for r in stored:  # after a restart, a redelivered ts-less message is known
                if r.ts_source == "collector":
                    self._tsless.setdefault(_content(r), r.ts_ns)
            if key in late:
                self._loaded[key] = stored
            if key in unknown:
                if stored:
                    # nothing stored before the loaded window: it is the device's whole history
                    self.engine.seed(stored, whole_history=stored[0].ts_ns >= start_ns)
                horizon = self.engine.horizon(*key)
                if horizon is None or unknown[key] >= horizon:
                    continue
                # a compact engine keeps of the seeded history only what the next in-order
                # reading needs: a batch reading before that is late (docs/intervals.md)
                self._loaded[key] = stored
                if _all_stored(batch_by_device.get(key, []), stored, horizon):
                    continue  # e.g. redelivered after a crash: stored already, changes nothing
            park = self.registry.park(key[0])
            if park is None:
                continue
            # beyond the engine's history: recompute the window from storage plus this batch
            window = compute_window(
                [*stored, *batch_by_device.get(key, [])],
                park,
                start_ns,
                FAR_NS,
                whole_history=bool(stored) and stored[0].ts_ns >= start_ns,
            )
            recomputed.extend(window)
            self.metrics.recomputed.inc(len(window))
        return recomputed

    async def _fetch_histories(
        self, by_park: dict[str, dict[str, int]]
    ) -> dict[str, dict[str, History]] | None:
        """`Storage.histories` of each park's devices; None when storage is unavailable."""
        history = self.history
        assert history is not None
        # one batched lookup per park; a batch may span many parks, so bound those in flight
        sem = asyncio.Semaphore(16)

        async def one(park_id: str, first_ns: dict[str, int]) -> dict[str, History]:
            async with sem:
                return await self._stored_histories(history, park_id, first_ns)

        results = await asyncio.gather(
            *(one(p, first) for p, first in by_park.items()), return_exceptions=True
        )
        if any(isinstance(r, StorageUnavailable) for r in results):
            return None
        out: dict[str, dict[str, History]] = {}
        for park_id, outcome in zip(by_park, results, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            out[park_id] = outcome
        return out

    async def _stored_conflict(self, park_id: str, device: str, ts_ns: int) -> list[IntervalEnergy]:
        """The stored interval holding a refused conflicting reading, flagged `conflict`
        (docs/intervals.md); nothing when storage has none or cannot answer now (the conflict
        record itself is stored either way)."""
        park = self.registry.park(park_id)
        if self.history is None or park is None:
            return []
        start = interval_start_ns(ts_ns, park)
        try:
            rows = await self.history.intervals(park_id, start, start + 1, device)
        except StorageUnavailable:
            return []
        return self.engine.with_conflicts(rows)

    async def _stored_histories(
        self, history: Storage, park_id: str, first_ns: dict[str, int]
    ) -> dict[str, History]:
        """Per device, the stored readings that determine every interval from the one before
        its `first_ns` onward (docs/intervals.md, "restart"): all devices of a park in a few
        store requests, since a restart meets every device of every park at once."""
        park = self.registry.park(park_id)
        if park is None:
            return {device: (ts, []) for device, ts in first_ns.items()}
        found = await history.histories(park_id, first_ns, lambda ts: history_start_ns(ts, park))
        # No reading before a device's first one does not mean storage has none: when its
        # first-ever reading arrives late, the readings stored after it are its whole history
        # (docs/intervals.md, "Collector protocol"). Asked from the earliest of those starts:
        # none of these devices has a reading before it.
        bare = {device: FAR_NS for device, (_, stored) in found.items() if not stored}
        if bare:
            start_ns = min(found[device][0] for device in bare)
            after = await history.histories(park_id, bare, lambda _ts: start_ns)
            found.update((device, h) for device, h in after.items() if h[1])
        return found

    def _repair_due(self) -> bool:
        return bool(self._deferred) and self.writer.spool_depth == 0 and self._history_up()

    def _history_up(self) -> bool:
        # storage answered the spool's replay since the failure: it is back, don't wait longer
        return (
            time.monotonic() >= self._history_down_until
            or self.writer.replayed_batches > self._replayed_at_failure
        )

    def _history_failed(self) -> None:
        self._history_down_until = time.monotonic() + HISTORY_RETRY_S
        self._replayed_at_failure = self.writer.replayed_batches

    def _defer(
        self,
        unknown: dict[tuple[str, str], int],
        late: dict[tuple[str, str], int],
        readings: list[Reading],
    ) -> None:
        """Storage is down: never guess. Hold the engine at this batch and repair later."""
        earliest: dict[tuple[str, str], Reading] = {}
        for r in readings:
            key = (r.park, r.device)
            if key in unknown and (key not in earliest or r.ts_ns < earliest[key].ts_ns):
                earliest[key] = r
        # seeding the earliest reading makes the engine treat older segments as unknown, so it
        # emits nothing it cannot know exactly instead of overwriting stored intervals
        self.engine.seed(earliest.values())
        for key, ts in {**unknown, **late}.items():
            self._deferred[key] = min(ts, self._deferred.get(key, ts))

    async def stop(self) -> None:
        """Flush what is queued, then stop the flush task."""
        self._stopping = True
        self._has_items.set()
        self._full.set()
        if self._task is not None:
            await self._task
            self._task = None
