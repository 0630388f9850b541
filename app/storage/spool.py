# Long module: the spool file and DurableWriter share one ordering and crash-safety invariant.
"""Durability: an on-disk sqlite spool and `DurableWriter` (write-or-spool, ordered replay).

Why sqlite rather than a hand-rolled append-only log: a committed INSERT is an atomic,
fsync'd append (WAL + synchronous=FULL), `ORDER BY id` is an ordered replay, deleting a
replayed row is atomic with whatever else the same transaction does (quarantine, head
rewrite), and a crash at any point leaves either the old or the new state — torn writes,
partial records, length prefixes, checksums and log compaction all come for free, from a
library in the standard library that is tested far beyond anything we would write.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.storage.base import Storage, StorageRejected, StorageUnavailable, WriteBatch

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_SPOOL_BYTES = 1 << 30  # stored (compressed) bytes, ~ days of a large park
DEFAULT_REPLAY_MAX_ITEMS = 20_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ns INTEGER NOT NULL,
    n_items INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    quarantined_ns INTEGER NOT NULL,
    error TEXT NOT NULL,
    n_items INTEGER NOT NULL,
    data BLOB NOT NULL
);
"""


class WriterClosed(RuntimeError):
    """`write()` on a closed (or closing) DurableWriter: the batch was NOT stored."""


class SpoolLocked(RuntimeError):
    """Another DurableWriter (maybe another process) holds this spool."""


@dataclass(frozen=True, slots=True)
class QuarantinedBatch:
    """Points the store refused for good, with the server's error. `batch` is None only if
    the stored row could not be decoded (then `data` holds its raw bytes)."""

    id: int
    quarantined_ns: int
    error: str
    n_items: int
    batch: WriteBatch | None
    data: bytes


def encode_blob(batch: WriteBatch) -> bytes:
    # Spooled JSON is very repetitive (names, tags); level 1 is ~5x smaller for little CPU.
    return zlib.compress(batch.to_json(), 1)


def decode_blob(data: bytes) -> WriteBatch:
    return WriteBatch.from_json(zlib.decompress(data))


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    n_items: int
    nbytes: int
    data: bytes


class SpoolDB:
    """The sqlite file. Not thread-safe: DurableWriter calls it from one dedicated thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._lock_fd)
            raise SpoolLocked(f"spool {path} is in use by another writer") from e
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only effective on a new file
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: every commit fsyncs the WAL, so "spooled" means "survives power loss".
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA journal_size_limit=67108864")
            self._db.executescript(_SCHEMA)
        except BaseException:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            raise

    def stats(self) -> tuple[int, int, int]:
        """(spooled batches, spooled bytes, quarantine rows)."""
        n, nbytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(nbytes), 0) FROM batches"
        ).fetchone()
        (q,) = self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()
        return int(n), int(nbytes), int(q)

    def append(self, data: bytes, n_items: int) -> None:
        self._db.execute(
            "INSERT INTO batches (created_ns, n_items, nbytes, data) VALUES (?, ?, ?, ?)",
            (time.time_ns(), n_items, len(data), data),
        )

    def head(self, max_items: int) -> list[_Row]:
        """Oldest rows, at least one, up to about `max_items` items in total."""
        rows: list[_Row] = []
        total = 0
        cur = self._db.execute("SELECT id, n_items, nbytes, data FROM batches ORDER BY id")
        for rid, n, nbytes, data in cur:
            if rows and total + n > max_items:
                break
            rows.append(_Row(rid, n, nbytes, data))
            total += n
        cur.close()
        return rows

    def finish(
        self,
        ids: list[int],
        quarantine: list[tuple[str, int, bytes]],
        head_rewrite: tuple[int, int, bytes] | None = None,
    ) -> None:
        """In one transaction: add quarantine rows, delete `ids` — except that with
        `head_rewrite=(id, n_items, data)` that row is kept (rewritten) as the new head."""
        now = time.time_ns()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO quarantine (quarantined_ns, error, n_items, data) VALUES (?, ?, ?, ?)",
                [(now, err, n, data) for err, n, data in quarantine],
            )
            keep = head_rewrite[0] if head_rewrite else None
            self._db.executemany(
                "DELETE FROM batches WHERE id = ?", [(i,) for i in ids if i != keep]
            )
            if head_rewrite is not None:
                rid, n, data = head_rewrite
                self._db.execute(
                    "UPDATE batches SET n_items = ?, nbytes = ?, data = ? WHERE id = ?",
                    (n, len(data), data, rid),
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def quarantine(self, items: list[tuple[str, int, bytes]]) -> None:
        self.finish([], items)

    def quarantined(self, limit: int) -> list[tuple[int, int, str, int, bytes]]:
        cur = self._db.execute(
            "SELECT id, quarantined_ns, error, n_items, data FROM quarantine ORDER BY id LIMIT ?",
            (limit,),
        )
        return [(int(a), int(b), str(c), int(d), bytes(e)) for a, b, c, d, e in cur.fetchall()]

    def compact(self) -> None:
        """Give disk space back once the spool has drained."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("PRAGMA incremental_vacuum")

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)


class DurableWriter:
    """Writes batches to `storage`, or — when it is unreachable — to a durable spool that a
    background task replays in order.

    Guarantees: `write()` returns only once the batch is in storage or fsync'd in the spool
    (so the caller may acknowledge its source). Batches reach storage in `write()` call order:
    while anything is spooled, new batches are spooled behind it. Points the store refuses for
    good (`StorageRejected`) are isolated by bisection and kept in the spool's `quarantine`
    table with the server's error. When the spool exceeds `max_spool_bytes`, `write()` waits
    for the replayer (backpressure) instead of dropping anything.

    Usage: `w = DurableWriter(storage, path); w.start(); await w.write(b); ...; await w.close()`.
    `close()` does not close `storage` (the caller owns it).
    """

    def __init__(
        self,
        storage: Storage,
        spool_path: str | os.PathLike[str],
        max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        *,
        replay_max_items: int = DEFAULT_REPLAY_MAX_ITEMS,
    ) -> None:
        self.storage = storage
        self.spool_path = Path(spool_path)
        self.max_spool_bytes = max_spool_bytes
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.replay_max_items = max(1, replay_max_items)
        self._db = SpoolDB(self.spool_path)
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lingtan-spool")
        depth, nbytes, quarantined = self._db.stats()
        self._depth = depth
        self._bytes = nbytes
        self._quarantined = quarantined
        self._lock = asyncio.Lock()  # serialises write() calls: keeps their order
        self._changed = asyncio.Condition()  # spool shrank, or closing
        self._wake = asyncio.Event()  # something was spooled, or closing
        self._closing = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        # metrics
        self.written_batches = 0
        self.spooled_batches = 0
        self.replayed_batches = 0
        self.storage_errors = 0
        self.last_write_latency_s: float | None = None

    # --- metrics --------------------------------------------------------------------------

    @property
    def spool_depth(self) -> int:
        """Batches waiting in the spool."""
        return self._depth

    @property
    def spool_bytes(self) -> int:
        """Stored (compressed) bytes waiting in the spool."""
        return self._bytes

    @property
    def quarantined_count(self) -> int:
        """Rows in the quarantine table (usually one refused point each)."""
        return self._quarantined

    @property
    def replaying(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background replay task (call from a running event loop)."""
        if self._closed:
            raise WriterClosed("writer is closed")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._replay_loop(), name="lingtan-spool-replay"
            )

    async def close(self) -> None:
        """Stop replaying; what is still spooled stays on disk for the next writer."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._wake.set()
        async with self._changed:
            self._changed.notify_all()  # writers blocked on backpressure give up
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:  # let an in-flight write() finish storing its batch
            await self._run(self._db.close)
        self._exec.shutdown(wait=True)

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until the spool is empty (replay must be running). False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self._changed:
                    await self._changed.wait_for(lambda: self._depth == 0 or self._closed)
        except TimeoutError:
            return False
        return self._depth == 0

    async def quarantined(self, limit: int = 1000) -> list[QuarantinedBatch]:
        rows = await self._run(self._db.quarantined, limit)
        out: list[QuarantinedBatch] = []
        for rid, ts, err, n, data in rows:
            try:
                batch: WriteBatch | None = decode_blob(data)
            except Exception:  # a corrupt row is reported, not fatal
                batch = None
            out.append(QuarantinedBatch(rid, ts, err, n, batch, data))
        return out

    # --- writing --------------------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> None:
        """Return once `batch` is in storage or committed to the spool (see class doc)."""
        if batch.is_empty:
            return
        if self._closed:
            raise WriterClosed("writer is closed")
        async with self._lock:
            if self._closed:
                raise WriterClosed("writer is closed")
            if self._depth == 0:
                quarantine, remaining = await self._deliver(batch)
                if quarantine:
                    await self._run(self._db.quarantine, quarantine)
                    self._quarantined += len(quarantine)
                if remaining is None:
                    self.written_batches += 1
                    return
                batch = remaining
            await self._spool(batch)

    async def _spool(self, batch: WriteBatch) -> None:
        blob = await self._run(encode_blob, batch)
        async with self._changed:
            await self._changed.wait_for(
                lambda: (
                    self._closed
                    or self._depth == 0
                    or self._bytes + len(blob) <= self.max_spool_bytes
                )
            )
        if self._closed:
            raise WriterClosed("writer closed while waiting for spool space")
        await self._run(self._db.append, blob, len(batch))
        self._depth += 1
        self._bytes += len(blob)
        self.spooled_batches += 1
        self._wake.set()

    async def _deliver(
        self, batch: WriteBatch
    ) -> tuple[list[tuple[str, int, bytes]], WriteBatch | None]:
        """Write `batch`, bisecting around refused points.

        Returns (quarantine rows, what is left unwritten because storage became unavailable,
        or None when everything was written or quarantined).
        """
        quarantine: list[tuple[str, int, bytes]] = []
        pending: deque[WriteBatch] = deque([batch])
        while pending:
            part = pending.popleft()
            t0 = time.monotonic()
            try:
                await self.storage.write(part)
            except StorageRejected as e:
                self.storage_errors += 1
                if len(part) <= 1:
                    log.error("storage refused a point, quarantined: %s", e)
                    quarantine.append((str(e), len(part), await self._run(encode_blob, part)))
                else:
                    a, b = part.split()
                    pending.appendleft(b)
                    pending.appendleft(a)
                continue
            except StorageUnavailable as e:
                self.storage_errors += 1
                log.warning("storage unavailable, spooling: %s", e)
                return quarantine, WriteBatch.concat([part, *pending])
            self.last_write_latency_s = time.monotonic() - t0
        return quarantine, None

    # --- replay ---------------------------------------------------------------------------

    async def _replay_loop(self) -> None:
        backoff = self.retry_initial_s
        while not self._closing.is_set():
            if self._depth == 0:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                progressed = await self._replay_once()
            except (asyncio.CancelledError, WriterClosed):
                raise
            except Exception:  # never let the replayer die: log, back off, retry
                log.exception("spool replay failed")
                progressed = False
            if progressed:
                backoff = self.retry_initial_s
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=backoff)
            backoff = min(backoff * 2, self.retry_max_s)

    async def _replay_once(self) -> bool:
        """Replay the oldest spooled rows as one write. True if all of them were done."""
        rows = await self._run(self._db.head, self.replay_max_items)
        if not rows:
            self._depth, self._bytes, self._quarantined = await self._run(self._db.stats)
            return True
        batches: list[WriteBatch] = []
        quarantine: list[tuple[str, int, bytes]] = []
        for row in rows:
            try:
                batches.append(await self._run(decode_blob, row.data))
            except Exception as e:  # corrupt row: keep its bytes, do not block the spool
                quarantine.append((f"undecodable spool row {row.id}: {e!r}", row.n_items, row.data))
        refused, remaining = await self._deliver(WriteBatch.concat(batches))
        quarantine.extend(refused)
        ids = [r.id for r in rows]
        if remaining is None:
            await self._run(self._db.finish, ids, quarantine)
            self._quarantined += len(quarantine)
            self._after_removal(len(rows), sum(r.nbytes for r in rows))
            self.replayed_batches += len(rows)
            await self._notify()
            if self._depth == 0:
                await self._run(self._db.compact)
            return True
        if quarantine:
            # Points were quarantined before storage went away: commit that, and keep only
            # what is left as the new head so they are not quarantined twice.
            blob = await self._run(encode_blob, remaining)
            await self._run(self._db.finish, ids, quarantine, (ids[0], len(remaining), blob))
            self._quarantined += len(quarantine)
            self._after_removal(len(rows) - 1, sum(r.nbytes for r in rows) - len(blob))
            await self._notify()
        return False

    def _after_removal(self, n_rows: int, n_bytes: int) -> None:
        self._depth -= n_rows
        self._bytes -= n_bytes

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking spool work on the spool thread (sqlite + compression)."""
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)
