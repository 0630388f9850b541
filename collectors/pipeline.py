"""Ingest pipeline: decode each message, batch, derive interval energies, make durable, ack.

A message's handler returns (and so the MQTT layer sends its PUBACK) only after the batch
holding its readings, interval energies and dead letters has been written to storage or
committed to the on-disk spool. Batches are flushed one at a time, in arrival order, so a
later recomputation of an interval always overwrites an earlier one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from app.intervals.engine import IntervalEngine
from app.intervals.models import IntervalEnergy
from app.registry.models import Registry
from app.storage.base import Storage, StorageUnavailable, WriteBatch
from app.storage.spool import DurableWriter
from app.telemetry.decode import Decoded, DecodeLimits, TelemetryDecoder
from app.telemetry.models import DeadLetter, Reading
from collectors.metrics import CollectorMetrics

log = logging.getLogger(__name__)

#: How far back to look for a device's previous reading when the collector (re)starts.
HISTORY_LOOKBACK_S = 2 * 86_400
#: After storage failed to answer a history lookup, don't ask again for this long.
HISTORY_RETRY_S = 5.0


@dataclass(slots=True)
class _Pending:
    decoded: Decoded
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Queue:
    items: list[_Pending] = field(default_factory=list)
    size: int = 0


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
        limits: DecodeLimits | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        on_readings: Callable[[list[Reading]], None] | None = None,
    ) -> None:
        self.registry = registry
        self.decoder = TelemetryDecoder(registry, limits)
        self.writer = writer
        self.history = history
        self.metrics = metrics or CollectorMetrics()
        self.batch_max_items = batch_max_items
        self.batch_max_wait_s = batch_max_wait_s
        self.clock_ns = clock_ns
        self.on_readings = on_readings
        self.engine = self._new_engine()
        self._known_devices: set[tuple[str, str]] = set()
        self._history_down_until = 0.0
        self._queue = _Queue()
        self._has_items = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def _new_engine(self) -> IntervalEngine:
        return IntervalEngine(self.registry.park, history_window_s=HISTORY_LOOKBACK_S)

    # -- MQTT side ---------------------------------------------------------------------

    async def handle(self, topic: str, payload: bytes) -> None:
        """MQTT message handler: returns once the message's content is durable."""
        decoded = self.decoder.decode(topic, payload, self.clock_ns())
        self.metrics.messages.inc()
        if decoded.ignored_fields:
            self.metrics.ignored_fields.inc(decoded.ignored_fields)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.items.append(_Pending(decoded, done))
        self._queue.size += len(decoded.readings) + len(decoded.deadletters)
        self._has_items.set()
        if self._queue.size >= self.batch_max_items:
            self._full.set()
        await done

    # -- flushing ----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lingtan-collector-flush")

    async def _run(self) -> None:
        while True:
            await self._has_items.wait()
            if self._queue.size < self.batch_max_items and self.batch_max_wait_s > 0:
                # idle until now: give a burst a moment to fill the batch
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.batch_max_wait_s)
            queue, self._queue = self._queue, _Queue()
            self._has_items.clear()
            self._full.clear()
            await self._flush(queue.items)
            if self._stopping and not self._queue.items:
                return

    async def _flush(self, items: list[_Pending]) -> None:
        readings: list[Reading] = []
        deadletters: list[DeadLetter] = []
        for item in items:
            readings.extend(item.decoded.readings)
            deadletters.extend(item.decoded.deadletters)
        if not readings and not deadletters:
            for item in items:
                if not item.done.done():
                    item.done.set_result(None)
            return
        try:
            await self._load_history(readings)
            intervals = self.engine.add(readings)
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
            self._known_devices.clear()
            for item in items:
                if not item.done.done():
                    item.done.set_exception(exc)
            return
        self._count(
            readings, deadletters, intervals, spooled=self.writer.spooled_batches > spooled_before
        )
        if self.on_readings and readings:
            self.on_readings(readings)
        for item in items:
            if not item.done.done():
                item.done.set_result(None)

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
        m.spool_depth.set(self.writer.spool_depth)
        m.spool_bytes.set(self.writer.spool_bytes)

    async def _load_history(self, readings: Iterable[Reading]) -> None:
        """Seed the engine with each newly seen device's last stored readings (restart safety)."""
        if self.history is None:
            return
        first_ts: dict[tuple[str, str], int] = {}
        for r in readings:
            key = (r.park, r.device)
            if key in self._known_devices:
                continue
            if key not in first_ts or r.ts_ns < first_ts[key]:
                first_ts[key] = r.ts_ns
        if not first_ts:
            return
        if time.monotonic() < self._history_down_until:
            self.metrics.history_misses.inc(len(first_ts))
            self._known_devices.update(first_ts)
            return
        history = self.history
        sem = asyncio.Semaphore(16)

        async def one(key: tuple[str, str], before_ns: int) -> list[Reading]:
            async with sem:
                return await history.last_readings(key[0], key[1], before_ns, 4)

        keys = list(first_ts)
        results = await asyncio.gather(*(one(k, first_ts[k]) for k in keys), return_exceptions=True)
        seed: list[Reading] = []
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, StorageUnavailable):
                self._history_down_until = time.monotonic() + HISTORY_RETRY_S
                self.metrics.history_misses.inc()
                log.warning("storage unavailable: no previous readings for %s/%s", *key)
            elif isinstance(result, BaseException):
                raise result
            else:
                seed.extend(result)
        if seed:
            self.engine.seed(seed)
        self._known_devices.update(keys)

    async def stop(self) -> None:
        """Flush what is queued, then stop the flush task."""
        self._stopping = True
        self._has_items.set()
        self._full.set()
        if self._task is not None:
            await self._task
            self._task = None
