# Long module: the embedded backend's SQL and its Storage class, inside app/storage by design.
"""`EmbeddedStorage`: the `Storage` protocol on one local SQLite file (WAL), for single machines.

Why hand-written stdlib `sqlite3` rather than an ORM or aiosqlite: the hot path is one
`executemany` UPSERT per table per batch (tens of thousands of rows/s) and one indexed range
scan per query, decoded straight into domain objects; an ORM's per-row object layer would cost
more than the database work itself, and the merge-on-overwrite is SQLite-specific SQL
(`json_patch`) anyway. aiosqlite is just "one connection on one thread" — the few lines below,
without a dependency, and with separate reader threads so a query never waits behind a write.

Layout (all times UTC epoch ns):

- `reading(park, device, ts_ns, vals, reset, collector)`, key (park, device, ts_ns);
  index (park, ts_ns): the *open* raw readings, as written. Once a reading's UTC hour is over
  (plus `_GRACE_NS`), `compact()` moves it into
- `reading_block(park, device, block, n, data)`, key (park, device, block), index (park,
  block): one device's readings of one hour (`block = ts_ns // BLOCK_NS`), `n` of them, in
  `app.storage.readingblock`'s compact form (~11 B per reading on disk instead of ~135). A late
  reading for a compacted hour lands in `reading` like any other and is merged into its block
  at the next compaction; every query reads both tables in one snapshot and merges them the
  same way, so nothing a query returns depends on whether compaction ran.
- `interval_energy(park, start_ns, device, end_ns, role, vals, estimated, flags)`, key
  (park, start_ns, device) so a park's time range is one sequential scan (the balance load);
  index (park, device, start_ns) for one device.
- `interval_role_total(park, start_ns, role, end_ns, rows, estimated, <3 electricity sums>)`:
  re-summed for every (park, start) a write touches; serves `interval_role_sums`.
  `interval_series(park, device, role)`: every pair ever written (InfluxDB's series list).
- `interval_change(park, day, token)`: change markers; `day_rollup(park, kind, day, stamp,
  payload)`: the balance's day rollups (docs/storage.md).
- `deadletter(id, received_ns, park_key, reason, park, device, topic, detail, raw)`, unique
  (park_key, reason, received_ns) — InfluxDB's series + time — indexes by time and park.

Values are one JSON object per row: one row per point keeps UPSERTs and range scans cheap (a
(key, value) table would multiply rows and joins by the number of quantities), any value name
is stored as-is (no reserved names), Python's `repr` floats round-trip exactly, and SQLite's
`json_patch` merges an overwrite into the stored object exactly like InfluxDB merges fields.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from app.intervals.models import IntervalEnergy
from app.storage import readingblock, schema
from app.storage.base import (
    FAR_NS,
    NS_PER_DAY,
    ROLE_SUM_FIELDS,
    DayRollup,
    FlaggedRow,
    History,
    RoleSums,
    StorageRejected,
    StorageUnavailable,
    WriteBatch,
    changed_days,
    new_change_token,
)
from app.telemetry.models import DeadLetter, Reading, RejectReason

log = logging.getLogger(__name__)

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL"]

SCHEMA_VERSION = 4  # 2: interval_role_total; 3: interval_change; 4: reading_block, day_rollup
_READ_THREADS = 2
_FETCH_ROWS = 20_000
_B = readingblock.BLOCK_NS
#: an hour's readings stay open this long after the hour ends (stragglers, a gateway's batch)
_GRACE_NS = 120 * 1_000_000_000
#: open readings moved into blocks per compaction transaction (bounds how long it locks)
_COMPACT_ROWS = 50_000
#: how often writes run maintenance (compaction, retention) by default
COMPACT_EVERY_S = 60.0
_PRUNE_EVERY_S = 3_600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reading (
    park TEXT NOT NULL,
    device TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    vals TEXT NOT NULL,
    reset INTEGER NOT NULL,
    collector INTEGER NOT NULL,
    PRIMARY KEY (park, device, ts_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reading_park_ts ON reading (park, ts_ns);

-- compacted raw readings: one device's hour per row (app/storage/readingblock.py)
CREATE TABLE IF NOT EXISTS reading_block (
    park TEXT NOT NULL,
    device TEXT NOT NULL,
    block INTEGER NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (park, device, block)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reading_block_park ON reading_block (park, block);

CREATE TABLE IF NOT EXISTS interval_energy (
    park TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    device TEXT NOT NULL,
    end_ns INTEGER NOT NULL,
    role TEXT NOT NULL,
    vals TEXT NOT NULL,
    estimated INTEGER NOT NULL,
    flags TEXT NOT NULL,
    PRIMARY KEY (park, start_ns, device)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS interval_park_device_start
    ON interval_energy (park, device, start_ns);

-- every (park, device, role) an interval was ever written under (InfluxDB's series list):
-- lets a caller check cheaply that rows can be summed by their stored role
CREATE TABLE IF NOT EXISTS interval_series (
    park TEXT NOT NULL,
    device TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (park, device, role)
) WITHOUT ROWID;

-- per park, interval start and stored role: row counts and the summed electricity counters,
-- rebuilt for every (park, start) a write touches (exact, not incremental: no float drift)
CREATE TABLE IF NOT EXISTS interval_role_total (
    park TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    role TEXT NOT NULL,
    end_ns INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    energy_import_kwh REAL NOT NULL,
    energy_export_kwh REAL NOT NULL,
    energy_kwh REAL NOT NULL,
    PRIMARY KEY (park, start_ns, role)
) WITHOUT ROWID;

-- change markers (docs/storage.md, "Change markers"): per park and UTC day of interval
-- starts, the token of the last write that touched it, committed with the intervals
CREATE TABLE IF NOT EXISTS interval_change (
    park TEXT NOT NULL,
    day INTEGER NOT NULL,
    token INTEGER NOT NULL,
    PRIMARY KEY (park, day)
) WITHOUT ROWID;

-- day rollups (docs/storage.md, "Day rollups"): what the balance computed per park, kind and
-- day, with the stamp of what it was computed from
CREATE TABLE IF NOT EXISTS day_rollup (
    park TEXT NOT NULL,
    kind TEXT NOT NULL,
    day INTEGER NOT NULL,
    stamp TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (park, kind, day)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS deadletter (
    id INTEGER PRIMARY KEY,
    received_ns INTEGER NOT NULL,
    park_key TEXT NOT NULL,
    reason TEXT NOT NULL,
    park TEXT,
    device TEXT,
    topic TEXT NOT NULL,
    detail TEXT NOT NULL,
    raw BLOB NOT NULL,
    UNIQUE (park_key, reason, received_ns)
);
CREATE INDEX IF NOT EXISTS deadletter_time ON deadletter (received_ns);
CREATE INDEX IF NOT EXISTS deadletter_park_time ON deadletter (park, received_ns);
"""

# Overwrites merge like InfluxDB fields do: values by key (`json_patch`), `reset` and the
# collector-stamped flag stay set once written (influx only writes those fields when true).
_UPSERT_READING = """
INSERT INTO reading (park, device, ts_ns, vals, reset, collector) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (park, device, ts_ns) DO UPDATE SET
    vals = json_patch(vals, excluded.vals),
    reset = max(reset, excluded.reset),
    collector = max(collector, excluded.collector)
"""
# An interval is keyed by park, device and start (not role, unlike influx's series): a device
# whose registry role changed must not be counted twice. `estimated`, `flags` and the end are
# always written, so they are always current, as in influx.
_UPSERT_INTERVAL = """
INSERT INTO interval_energy (park, start_ns, device, end_ns, role, vals, estimated, flags)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (park, start_ns, device) DO UPDATE SET
    end_ns = excluded.end_ns,
    role = excluded.role,
    vals = json_patch(vals, excluded.vals),
    estimated = excluded.estimated,
    flags = excluded.flags
"""
_ROLLUP_SELECT = """
SELECT park, start_ns, role, max(end_ns), count(*), sum(estimated),
    total(vals ->> '$.energy_import_kwh'), total(vals ->> '$.energy_export_kwh'),
    total(vals ->> '$.energy_kwh')
FROM interval_energy
"""
_ROLLUP_CLEAR = "DELETE FROM interval_role_total WHERE park = ? AND start_ns = ?"
_ROLLUP_FILL = (
    "INSERT INTO interval_role_total "
    + _ROLLUP_SELECT
    + " WHERE park = ? AND start_ns = ? GROUP BY role"
)
_ROLLUP_REBUILD = (
    "DELETE FROM interval_role_total;"
    "INSERT INTO interval_role_total " + _ROLLUP_SELECT + " GROUP BY park, start_ns, role"
)

_UPSERT_DEADLETTER = """
INSERT INTO deadletter (received_ns, park_key, reason, park, device, topic, detail, raw)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (park_key, reason, received_ns) DO UPDATE SET
    park = excluded.park,
    device = coalesce(excluded.device, device),
    topic = excluded.topic,
    detail = excluded.detail,
    raw = excluded.raw
"""

_OPEN_COLS = "park, device, ts_ns, vals, reset, collector"

_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
# `parse_int`: a value written as an int (or `-0`) still reads back as a float.
_decode = json.JSONDecoder(parse_int=float).decode


def _vals_json(values: dict[str, float], kind: str, park: str, device: str, ts_ns: int) -> str:
    try:
        return _encode(values)
    except ValueError as e:
        msg = f"non-finite value in {kind} of {park}/{device} at {ts_ns}: {values!r}"
        raise StorageRejected(msg) from e
    except TypeError as e:
        msg = f"non-numeric value in {kind} of {park}/{device} at {ts_ns}: {values!r}"
        raise StorageRejected(msg) from e


def _reading_rows(readings: Iterable[Reading]) -> list[tuple[Any, ...]]:
    rows = []
    for r in readings:
        if not r.values and not r.reset and r.ts_source != "collector":
            raise StorageRejected(f"reading of {r.park}/{r.device} at {r.ts_ns} has no values")
        vals = _vals_json(r.values, "reading", r.park, r.device, r.ts_ns)
        # JSON would take a string too; a reading's block (readingblock) holds numbers only
        if not all(isinstance(v, float | int) for v in r.values.values()):
            msg = f"non-numeric value in reading of {r.park}/{r.device} at {r.ts_ns}: {r.values!r}"
            raise StorageRejected(msg)
        rows.append(
            (r.park, r.device, r.ts_ns, vals, int(r.reset), int(r.ts_source == "collector"))
        )
    return rows


def _interval_rows(intervals: Iterable[IntervalEnergy]) -> list[tuple[Any, ...]]:
    return [
        (
            iv.park,
            iv.start_ns,
            iv.device,
            iv.end_ns,
            iv.role,
            _vals_json(iv.values, "interval", iv.park, iv.device, iv.start_ns),
            int(iv.estimated),
            ",".join(iv.flags),
        )
        for iv in intervals
    ]


def _deadletter_rows(deadletters: Iterable[DeadLetter]) -> list[tuple[Any, ...]]:
    # Same identity as in InfluxDB (park tag, reason, time), same 1 ns nudge inside a batch, so
    # both backends keep the same dead letters and a replayed batch overwrites itself.
    used: set[tuple[str, str, int]] = set()
    rows = []
    for d in deadletters:
        park_key = schema.deadletter_park_tag(d.park)
        ts = d.received_ns
        while (park_key, d.reason.value, ts) in used:
            ts += 1
        used.add((park_key, d.reason.value, ts))
        rows.append(
            (ts, park_key, d.reason.value, d.park, d.device, d.topic, d.detail, bytes(d.raw))
        )
    return rows


def _decode_many(rows: list[Any], col: int) -> list[dict[str, float]]:
    """The JSON objects in column `col` of `rows`, decoded as one array (~25% faster per row)."""
    out: list[dict[str, float]] = _decode("[" + ",".join([r[col] for r in rows]) + "]")
    return out


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = True


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many acyclic objects: a year of intervals is millions
    of dataclasses and dicts, and every collection pass would rescan them. Safe when nested or
    used from several threads at once (the last one out restores the previous state)."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _reason(value: str) -> RejectReason:
    try:
        return RejectReason(value)
    except ValueError:
        return RejectReason.INVALID_READING


_IMP, _EXP, _GEN = ROLE_SUM_FIELDS

#: the raw readings' tables (open rows and blocks): what "bytes per reading" divides
RAW_TABLES = ("reading", "reading_block")


@dataclass(frozen=True, slots=True)
class StoreStats:
    """`EmbeddedStorage.stats`: sizes on disk (bytes, indexes included), rows, raw readings."""

    path: str
    file_bytes: int
    #: pages freed (by compaction, pruning) that SQLite reuses before growing the file
    free_bytes: int
    table_bytes: dict[str, int]
    table_rows: dict[str, int]
    readings_compacted: int
    readings_open: int
    first_ns: int | None
    last_ns: int | None
    #: over the last 7 days (by reading time / interval start), per day
    readings_per_day: float
    intervals_per_day: float

    @property
    def readings(self) -> int:
        return self.readings_compacted + self.readings_open

    @property
    def raw_bytes(self) -> int:
        return sum(self.table_bytes.get(t, 0) for t in RAW_TABLES)

    @property
    def bytes_per_reading(self) -> float | None:
        return self.raw_bytes / self.readings if self.readings else None


def _reading(park: str, device: str, pt: readingblock.Point) -> Reading:
    return Reading(
        park, device, pt.ts_ns, pt.values, pt.reset, "collector" if pt.collector else "device"
    )


def retention_cut_ns(days: float, now_ns: int) -> int:
    """The time before which raw readings go under a retention of `days`: `now - days`,
    rounded down to a UTC day (readings are deleted by whole days, oldest first)."""
    return ((now_ns - int(days * NS_PER_DAY)) // NS_PER_DAY) * NS_PER_DAY


class EmbeddedStorage:
    """`Storage` in one SQLite file (WAL): `lingtan up` without InfluxDB.

    Raw readings are compacted into hourly blocks by the writing process (see the module
    docstring) at most every `compact_every_s`, and, when `raw_retention_days` is set, those
    older than that are deleted once an hour (docs/storage.md, "Size on disk and retention").

    `write()` returns once the batch is committed in one transaction. With the default
    `synchronous="FULL"` the commit is fsync'd: nothing acknowledged is lost even to a power
    cut (the collector acknowledges MQTT after `write()`, and there is no spool in front of
    this store worth the name: it is the same disk). `"NORMAL"` survives any process crash but
    may lose the last commits on an OS crash or power loss.

    Several processes may open the same file (WAL: one writer at a time, readers never
    blocked); a write that cannot get the lock within `busy_timeout_s` raises
    `StorageUnavailable`. Opening a path that is not a writable SQLite database raises
    `StorageUnavailable` with the path and SQLite's reason.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout_s: float = 10.0,
        raw_retention_days: float | None = None,
        compact_every_s: float | None = COMPACT_EVERY_S,
    ) -> None:
        self.path = Path(path)
        if raw_retention_days is not None and raw_retention_days <= 0:
            raise ValueError(f"raw_retention_days must be positive, not {raw_retention_days}")
        #: raw readings older than this many days are deleted by the writes' maintenance
        #: (None: kept forever); intervals, their sums and change markers never are
        self.raw_retention_days = raw_retention_days
        #: writes compact closed hours at most this often (0: after every write; None: never,
        #: the readings stay as written, as before schema 4: benchmarks compare the two)
        self.compact_every_s = compact_every_s
        self._next_compact = 0.0
        self._next_prune = 0.0
        self.busy_timeout_ms = max(0, int(busy_timeout_s * 1000))
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.synchronous = synchronous
        self._closed = False
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect(write=True)
        except (OSError, sqlite3.Error) as e:
            raise StorageUnavailable(f"cannot open embedded store {self.path}: {e}") from e
        try:
            self._init_schema()
        except sqlite3.Error as e:
            self._db.close()
            raise StorageUnavailable(f"cannot open embedded store {self.path}: {e}") from e
        self._wexec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lingtan-store-w")
        self._rexec = ThreadPoolExecutor(
            max_workers=_READ_THREADS, thread_name_prefix="lingtan-store-r"
        )

    # --- connections ----------------------------------------------------------------------

    def _connect(self, *, write: bool) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (one transaction per batch).
        db = sqlite3.connect(
            str(self.path),
            isolation_level=None,
            check_same_thread=False,
            timeout=self.busy_timeout_ms / 1000,
        )
        try:
            db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            if write:
                mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"cannot switch to WAL (journal_mode={mode})")
                db.execute(f"PRAGMA synchronous = {self.synchronous}")
            else:
                db.execute("PRAGMA query_only = 1")
            db.execute("PRAGMA cache_size = -65536")  # 64 MiB per connection
            db.execute("PRAGMA temp_store = MEMORY")
        except BaseException:
            db.close()
            raise
        return db

    def _init_schema(self) -> None:
        db = self._db
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"store schema version {version} is newer than this Lingtan ({SCHEMA_VERSION})"
            )
        db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            if 0 < version < 2:
                for stmt in _ROLLUP_REBUILD.split(";"):
                    db.execute(stmt)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect(write=False)
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

    async def _run(self, executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StorageUnavailable(f"embedded store {self.path} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, fn, *args)
        except sqlite3.Error as e:
            # Locked past the busy timeout, disk full, I/O error, a damaged file: the data is
            # fine, the store is not — callers keep it (spool) and retry.
            raise StorageUnavailable(f"embedded store {self.path}: {e}") from e

    # --- writes ---------------------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> None:
        if batch.is_empty:
            return
        # Encoding runs on the writer thread too (a few ms per 5,000 points), and all of it
        # before BEGIN: a bad point rejects the whole batch and nothing is half-written.
        await self._run(self._wexec, self._write_sync, batch)

    def _write_sync(self, batch: WriteBatch) -> None:
        readings = _reading_rows(batch.readings)
        intervals = _interval_rows(batch.intervals)
        deadletters = _deadletter_rows(batch.deadletters)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if readings:
                db.executemany(_UPSERT_READING, readings)
            if intervals:
                db.executemany(_UPSERT_INTERVAL, intervals)
                series = {(row[0], row[2], row[4]) for row in intervals}
                db.executemany(
                    "INSERT OR IGNORE INTO interval_series (park, device, role) VALUES (?, ?, ?)",
                    sorted(series),
                )
                # Re-sum every (park, start) the batch touched, all roles (a device may have
                # moved between roles): costs one short range scan per touched interval.
                touched = sorted({(row[0], row[1]) for row in intervals})
                db.executemany(_ROLLUP_CLEAR, touched)
                db.executemany(_ROLLUP_FILL, touched)
                token = new_change_token()
                db.executemany(
                    "INSERT INTO interval_change (park, day, token) VALUES (?, ?, ?)"
                    " ON CONFLICT (park, day) DO UPDATE SET token = excluded.token",
                    [
                        (park, day, token)
                        for park, days in sorted(changed_days(batch.intervals).items())
                        for day in sorted(days)
                    ],
                )
            if deadletters:
                db.executemany(_UPSERT_DEADLETTER, deadletters)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if readings:
            self._maintain_sync()

    def _maintain_sync(self) -> None:
        """After a write (its data committed): compact and prune when they are due. A failure
        here loses nothing (the open rows stay) and is retried at the next write."""
        now = time.monotonic()
        try:
            if self.compact_every_s is not None and now >= self._next_compact:
                self._next_compact = now + self.compact_every_s
                self._compact_sync(time.time_ns())
            if self.raw_retention_days is not None and now >= self._next_prune:
                self._next_prune = now + _PRUNE_EVERY_S
                self._prune_sync(retention_cut_ns(self.raw_retention_days, time.time_ns()))
        except sqlite3.Error as e:
            log.warning("embedded store %s: maintenance failed, retried later: %s", self.path, e)
        except Exception:  # a bug must not fail a write that is committed
            log.exception("embedded store %s: maintenance failed, retried later", self.path)

    # --- compaction and retention ---------------------------------------------------------

    async def compact(
        self, now_ns: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Move every open reading of an hour that ended `_GRACE_NS` before `now_ns` (default:
        now) into its block; returns how many readings moved. `progress` gets the running
        count after each transaction."""
        now = time.time_ns() if now_ns is None else now_ns
        return await self._run(self._wexec, self._compact_sync, now, progress)

    def _compact_sync(self, now_ns: int, progress: Callable[[int], None] | None = None) -> int:
        cut_ns = ((now_ns - _GRACE_NS) // _B) * _B  # hours before this one are closed
        db = self._db
        moved = 0
        after: tuple[Any, ...] = ()  # key order, so a row that cannot be folded is passed by
        while True:
            db.execute("BEGIN IMMEDIATE")
            try:
                past = " AND (park, device, ts_ns) > (?, ?, ?)" if after else ""
                rows = db.execute(
                    f"SELECT {_OPEN_COLS} FROM reading WHERE ts_ns < ?{past}"
                    " ORDER BY park, device, ts_ns LIMIT ?",
                    (cut_ns, *after, _COMPACT_ROWS),
                ).fetchall()
                folded = self._fold_into_blocks(rows) if rows else []
                db.executemany(
                    "DELETE FROM reading WHERE park = ? AND device = ? AND ts_ns = ?", folded
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            moved += len(folded)
            if progress is not None and rows:
                progress(moved)
            if len(rows) < _COMPACT_ROWS:
                return moved
            after = tuple(rows[-1][:3])

    def _fold_into_blocks(self, rows: list[Any]) -> list[tuple[str, str, int]]:
        """Merge open `rows` into their blocks; the (park, device, ts) of those merged. A
        block that cannot be encoded keeps its rows open (and readable), logged."""
        db = self._db
        groups: dict[tuple[str, str, int], list[readingblock.Point]] = {}
        for (p, d, ts, _, reset, coll), v in zip(rows, _decode_many(rows, 3), strict=True):
            groups.setdefault((p, d, ts // _B), []).append(
                readingblock.Point(ts, v, reset == 1, coll == 1)
            )
        out = []
        folded = []
        for (p, d, b), points in groups.items():
            old = db.execute(
                "SELECT data FROM reading_block WHERE park = ? AND device = ? AND block = ?",
                (p, d, b),
            ).fetchone()
            try:
                have = readingblock.decode(old[0]) if old else []
                merged = readingblock.merge_points([*have, *points])
                data = readingblock.encode(merged)
            except Exception:
                log.exception("embedded store %s: cannot compact %s/%s hour %d", self.path, p, d, b)
                continue
            out.append((p, d, b, len(merged), data))
            folded += [(p, d, pt.ts_ns) for pt in points]
        db.executemany(
            "INSERT OR REPLACE INTO reading_block (park, device, block, n, data)"
            " VALUES (?, ?, ?, ?, ?)",
            out,
        )
        return folded

    async def vacuum(self) -> None:
        """Rewrite the file without its free pages (needs as much free disk as the file)."""

        def run() -> None:
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        await self._run(self._wexec, run)

    async def prune_raw(self, before_ns: int) -> int:
        """Delete the raw readings of every hour that ends at or before `before_ns`
        (`before_ns` is rounded down to a whole hour); returns how many. Intervals, their
        sums, change markers and dead letters are never touched."""
        return await self._run(self._wexec, self._prune_sync, before_ns)

    async def count_raw_before(self, before_ns: int) -> int:
        """How many raw readings `prune_raw(before_ns)` would delete."""
        cut_block = before_ns // _B

        def run() -> int:
            db = self._reader()
            (k,) = db.execute(
                "SELECT coalesce(sum(n), 0) FROM reading_block WHERE block < ?", (cut_block,)
            ).fetchone()
            (m,) = db.execute(
                "SELECT count(*) FROM reading WHERE ts_ns < ?", (cut_block * _B,)
            ).fetchone()
            return int(k) + int(m)

        return await self._run(self._rexec, self._snapshot, run)

    def _prune_sync(self, before_ns: int) -> int:
        cut_block = before_ns // _B
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            parks = [p for (p,) in db.execute("SELECT DISTINCT park FROM reading_block")]
            n = 0
            for park in parks:
                (k,) = db.execute(
                    "SELECT coalesce(sum(n), 0) FROM reading_block WHERE park = ? AND block < ?",
                    (park, cut_block),
                ).fetchone()
                db.execute(
                    "DELETE FROM reading_block WHERE park = ? AND block < ?", (park, cut_block)
                )
                n += int(k)
            n += db.execute("DELETE FROM reading WHERE ts_ns < ?", (cut_block * _B,)).rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if n:
            log.info("embedded store %s: pruned %d raw readings before %d", self.path, n, before_ns)
        return n

    # --- admin ----------------------------------------------------------------------------

    async def ping(self) -> bool:
        if self._closed:
            return False
        try:
            await self._run(self._rexec, lambda: self._reader().execute("SELECT 1").fetchone())
        except StorageUnavailable:
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Let queued work finish, then close connections (all created check_same_thread=False).
        await asyncio.to_thread(self._wexec.shutdown, wait=True)
        await asyncio.to_thread(self._rexec.shutdown, wait=True)
        with self._readers_lock:
            readers, self._readers = self._readers, []
        # Off the loop: the last connection to close checkpoints the WAL into the database
        # (and removes it), which may take a while after a burst of writes.
        await asyncio.to_thread(self._close_connections, [*readers, self._db])

    def _close_connections(self, conns: list[sqlite3.Connection]) -> None:
        for db in conns:
            try:
                db.close()
            except sqlite3.Error as e:
                log.warning("closing embedded store %s: %s", self.path, e)

    async def __aenter__(self) -> EmbeddedStorage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- queries --------------------------------------------------------------------------

    async def readings(
        self, park: str, start_ns: int, end_ns: int, device: str | None = None
    ) -> list[Reading]:
        return await self._run(
            self._rexec, self._snapshot, self._range, park, start_ns, end_ns, device
        )

    async def last_readings(
        self, park: str, device: str, before_ns: int, limit: int
    ) -> list[Reading]:
        return await self._run(
            self._rexec, self._snapshot, self._last, park, device, before_ns, max(0, limit)
        )

    async def histories(
        self, park: str, first_ns: Mapping[str, int], align: Callable[[int], int]
    ) -> dict[str, History]:
        def run() -> dict[str, History]:
            out: dict[str, History] = {}
            # each device reads its predecessor's block up to three times: decode it once
            self._local.blocks = {}
            for device, ts_ns in first_ns.items():
                pred = self._last(park, device, ts_ns, 1)
                if not pred:
                    out[device] = (align(ts_ns), [])
                    continue
                start_ns = align(pred[-1].ts_ns)
                before = self._last(park, device, start_ns, 1)
                out[device] = (start_ns, [*before, *self._range(park, start_ns, FAR_NS, device)])
            return out

        return await self._run(self._rexec, self._snapshot, run)

    def _snapshot(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` inside one read transaction: blocks and open rows of the same moment,
        whatever a compaction commits meanwhile."""
        db = self._reader()
        db.execute("BEGIN")
        try:
            with _gc_paused():
                return fn(*args)
        finally:
            self._local.blocks = None
            db.execute("COMMIT")

    def _block(self, data: bytes) -> list[readingblock.Point]:
        """A block's points, never to be mutated (`fn` of `_snapshot` may cache them)."""
        cache: dict[bytes, list[readingblock.Point]] | None = getattr(self._local, "blocks", None)
        if cache is None:
            return readingblock.decode(data)
        pts = cache.get(data)
        if pts is None:
            pts = cache[data] = readingblock.decode(data)
        return pts

    def _open_points(self, sql: str, args: tuple[Any, ...]) -> list[tuple[str, readingblock.Point]]:
        out = []
        cur = self._reader().execute(sql, args)
        while rows := cur.fetchmany(_FETCH_ROWS):
            for (_, d, ts, _, reset, coll), v in zip(rows, _decode_many(rows, 3), strict=True):
                out.append((d, readingblock.Point(ts, v, reset == 1, coll == 1)))
        return out

    def _range(self, park: str, start_ns: int, end_ns: int, device: str | None) -> list[Reading]:
        if end_ns <= start_ns:
            return []
        blocks = (start_ns // _B, (end_ns - 1) // _B)
        if device is None:
            bsql = "SELECT device, data FROM reading_block WHERE park = ? AND block BETWEEN ? AND ?"
            bargs: tuple[Any, ...] = (park, *blocks)
            osql = f"SELECT {_OPEN_COLS} FROM reading WHERE park = ? AND ts_ns >= ? AND ts_ns < ?"
            oargs: tuple[Any, ...] = (park, start_ns, end_ns)
        else:
            bsql = (
                "SELECT device, data FROM reading_block"
                " WHERE park = ? AND device = ? AND block BETWEEN ? AND ?"
            )
            bargs = (park, device, *blocks)
            osql = (
                f"SELECT {_OPEN_COLS} FROM reading"
                " WHERE park = ? AND device = ? AND ts_ns >= ? AND ts_ns < ?"
            )
            oargs = (park, device, start_ns, end_ns)
        found: dict[tuple[int, str], readingblock.Point] = {}
        for d, data in self._reader().execute(bsql, bargs):
            for pt in self._block(data):
                if start_ns <= pt.ts_ns < end_ns:
                    found[(pt.ts_ns, d)] = pt
        for d, pt in self._open_points(osql, oargs):
            key = (pt.ts_ns, d)
            have = found.get(key)
            found[key] = pt if have is None else readingblock.merged(have, pt)
        return [_reading(park, d, found[(ts, d)]) for ts, d in sorted(found)]

    def _last(self, park: str, device: str, before_ns: int, limit: int) -> list[Reading]:
        """The latest `limit` readings before `before_ns`, oldest first: the open rows' latest
        `limit` and the blocks' latest `limit` hold every one of them (merged where both do)."""
        if limit <= 0:
            return []
        found: dict[int, readingblock.Point] = {}
        cur = self._reader().execute(
            "SELECT data FROM reading_block WHERE park = ? AND device = ? AND block <= ?"
            " ORDER BY block DESC",
            (park, device, (before_ns - 1) // _B),
        )
        taken = 0
        for (data,) in cur:
            pts = [pt for pt in self._block(data) if pt.ts_ns < before_ns]
            for pt in pts[-(limit - taken) :]:
                found[pt.ts_ns] = pt
            taken += min(len(pts), limit - taken)
            if taken >= limit:
                break
        cur.close()
        osql = (
            f"SELECT {_OPEN_COLS} FROM reading"
            " WHERE park = ? AND device = ? AND ts_ns < ? ORDER BY ts_ns DESC LIMIT ?"
        )
        for _, pt in reversed(self._open_points(osql, (park, device, before_ns, limit))):
            have = found.get(pt.ts_ns)
            found[pt.ts_ns] = pt if have is None else readingblock.merged(have, pt)
        return [_reading(park, device, found[ts]) for ts in sorted(found)[-limit:]]

    async def intervals(
        self, park: str, start_ns: int, end_ns: int, device: str | None = None
    ) -> list[IntervalEnergy]:
        cols = "park, device, role, start_ns, end_ns, vals, estimated, flags"
        if device is None:
            sql = (
                f"SELECT {cols} FROM interval_energy"
                " WHERE park = ? AND start_ns >= ? AND start_ns < ? ORDER BY start_ns, device"
            )
            args: tuple[Any, ...] = (park, start_ns, end_ns)
        else:
            sql = (
                f"SELECT {cols} FROM interval_energy INDEXED BY interval_park_device_start"
                " WHERE park = ? AND device = ? AND start_ns >= ? AND start_ns < ?"
                " ORDER BY start_ns"
            )
            args = (park, device, start_ns, end_ns)
        return await self._run(self._rexec, self._intervals_sync, sql, args)

    def _intervals_sync(self, sql: str, args: tuple[Any, ...]) -> list[IntervalEnergy]:
        flag_cache: dict[str, tuple[str, ...]] = {"": ()}
        out: list[IntervalEnergy] = []
        cur = self._reader().execute(sql, args)
        with _gc_paused():
            while rows := cur.fetchmany(_FETCH_ROWS):
                for (p, d, role, s, e, _, est, fl), v in zip(
                    rows, _decode_many(rows, 5), strict=True
                ):
                    flags = flag_cache.get(fl)
                    if flags is None:
                        flags = flag_cache[fl] = tuple(fl.split(","))
                    out.append(IntervalEnergy(p, d, role, s, e, v, est == 1, flags))
        return out

    async def deadletters(
        self,
        park: str | None,
        start_ns: int | None,
        end_ns: int | None,
        limit: int = 1000,
    ) -> list[DeadLetter]:
        conds: list[str] = []
        args: list[Any] = []
        if park is not None:
            conds.append("park = ?")
            args.append(park)
        if start_ns is not None:
            conds.append("received_ns >= ?")
            args.append(start_ns)
        if end_ns is not None:
            conds.append("received_ns < ?")
            args.append(end_ns)
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        sql = (
            "SELECT received_ns, topic, park, device, reason, detail, raw FROM deadletter"
            f"{where} ORDER BY received_ns, park_key, reason LIMIT ?"
        )
        args.append(max(0, limit))
        return await self._run(self._rexec, self._deadletters_sync, sql, tuple(args))

    def _deadletters_sync(self, sql: str, args: tuple[Any, ...]) -> list[DeadLetter]:
        return [
            DeadLetter(ts, topic, park, device, _reason(reason), detail, bytes(raw))
            for ts, topic, park, device, reason, detail, raw in self._reader().execute(sql, args)
        ]

    # --- size on disk (`lingtan storage stats`) --------------------------------------------

    async def stats(
        self, now_ns: int | None = None, progress: Callable[[str], None] | None = None
    ) -> StoreStats:
        """What the file holds: bytes and rows per table (indexes counted with their table),
        the raw readings' time range and how much the last 7 days added per day."""
        now = time.time_ns() if now_ns is None else now_ns
        return await self._run(self._rexec, self._snapshot, self._stats, now, progress)

    def _stats(self, now_ns: int, progress: Callable[[str], None] | None) -> StoreStats:
        db = self._reader()
        say = progress or (lambda _msg: None)
        say("measuring pages (dbstat)")
        owner = dict(
            db.execute("SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')")
        )
        size: dict[str, int] = {}
        for name, nbytes in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            size[table] = size.get(table, 0) + int(nbytes)
        rows: dict[str, int] = {}
        for table in sorted(t for t in owner.values() if not t.startswith("sqlite_")):
            if table in rows:
                continue
            say(f"counting rows of {table}")
            rows[table] = int(db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
        say("raw readings: range and the last 7 days")
        compacted, first_b, last_b = db.execute(
            "SELECT coalesce(sum(n), 0), min(block), max(block) FROM reading_block"
        ).fetchone()
        first_o, last_o = db.execute("SELECT min(ts_ns), max(ts_ns) FROM reading").fetchone()
        firsts = [first_o] if first_o is not None else []
        lasts = [last_o] if last_o is not None else []
        if first_b is not None:  # the exact times: decode the first and the last hour's blocks
            sql = "SELECT data FROM reading_block WHERE block = ?"
            firsts += [readingblock.decode(d)[0].ts_ns for (d,) in db.execute(sql, (first_b,))]
            lasts += [readingblock.decode(d)[-1].ts_ns for (d,) in db.execute(sql, (last_b,))]
        week_ns = now_ns - 7 * NS_PER_DAY
        (week_blocks,) = db.execute(
            "SELECT coalesce(sum(n), 0) FROM reading_block WHERE block >= ?", (week_ns // _B,)
        ).fetchone()
        (week_open,) = db.execute(
            "SELECT count(*) FROM reading WHERE ts_ns >= ?", (week_ns,)
        ).fetchone()
        (week_iv,) = db.execute(
            "SELECT count(*) FROM interval_energy WHERE start_ns >= ?", (week_ns,)
        ).fetchone()
        (free_pages,) = db.execute("PRAGMA freelist_count").fetchone()
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
        return StoreStats(
            path=str(self.path),
            free_bytes=int(free_pages) * int(page_size),
            file_bytes=sum(
                f.stat().st_size
                for f in (self.path, self.path.with_name(self.path.name + "-wal"))
                if f.exists()
            ),
            table_bytes=size,
            table_rows=rows,
            readings_compacted=int(compacted),
            readings_open=rows.get("reading", 0),
            first_ns=min(firsts) if firsts else None,
            last_ns=max(lasts) if lasts else None,
            readings_per_day=(int(week_blocks) + int(week_open)) / 7,
            intervals_per_day=int(week_iv) / 7,
        )

    # --- aggregates and change markers (the balance's read path) --------------------------

    async def interval_series(self, park: str) -> set[tuple[str, str]]:
        """Every (device, role) that intervals of `park` were written under (ever)."""
        sql = "SELECT device, role FROM interval_series WHERE park = ?"

        def run() -> set[tuple[str, str]]:
            return {(d, r) for d, r in self._reader().execute(sql, (park,))}

        return await self._run(self._rexec, run)

    async def interval_role_sums(
        self,
        park: str,
        start_ns: int,
        end_ns: int,
        roles: Sequence[str] | None = None,
        *,
        interval_ns: int = 0,
        fields: Sequence[str] = ROLE_SUM_FIELDS,
        estimated: bool = True,
    ) -> list[RoleSums]:
        """`Storage.interval_role_sums` (all roles when `roles` is None).

        Served from a rollup kept exact on every write, so a year of a park comes back as one
        row per interval and role, whatever the number of devices. `interval_ns`, `fields`
        and `estimated` are unused: each row keeps its own end, and the rollup holds every
        sum and the estimated count."""
        args: list[Any] = [park, start_ns, end_ns]
        role_filter = ""
        if roles is not None:
            if not roles:
                return []
            role_filter = f" AND role IN ({', '.join('?' * len(roles))})"
            args += list(roles)
        sql = (
            "SELECT start_ns, end_ns, role, rows, estimated, energy_import_kwh,"
            " energy_export_kwh, energy_kwh FROM interval_role_total"
            " WHERE park = ? AND start_ns >= ? AND start_ns < ?"
            + role_filter
            + " ORDER BY start_ns, role"
        )

        def run() -> list[RoleSums]:
            return [
                RoleSums(s, e, role, n, est, {_IMP: imp, _EXP: exp, _GEN: gen})
                for s, e, role, n, est, imp, exp, gen in self._reader().execute(sql, tuple(args))
            ]

        return await self._run(self._rexec, run)

    async def flagged_intervals(
        self, park: str, start_ns: int, end_ns: int, roles: Sequence[str]
    ) -> list[FlaggedRow]:
        if not roles:
            return []
        sql = (
            "SELECT start_ns, device, estimated, flags FROM interval_energy"
            " WHERE park = ? AND start_ns >= ? AND start_ns < ?"
            f" AND role IN ({', '.join('?' * len(roles))}) AND (estimated != 0 OR flags != '')"
            " ORDER BY start_ns, device"
        )
        args = (park, start_ns, end_ns, *roles)

        def run() -> list[FlaggedRow]:
            return [
                (int(s), str(d), bool(e), tuple(f.split(",")) if f else ())
                for s, d, e, f in self._reader().execute(sql, args)
            ]

        return await self._run(self._rexec, run)

    async def interval_changes(self, park: str) -> dict[int, int]:
        sql = "SELECT day, token FROM interval_change WHERE park = ?"

        def run() -> dict[int, int]:
            return {int(d): int(t) for d, t in self._reader().execute(sql, (park,))}

        return await self._run(self._rexec, run)

    async def day_rollups(
        self, park: str, kind: str, first_day: int, last_day: int, *, payload: bool = True
    ) -> dict[int, DayRollup]:
        col = "payload" if payload else "x''"
        sql = (
            f"SELECT day, stamp, {col} FROM day_rollup"
            " WHERE park = ? AND kind = ? AND day >= ? AND day <= ?"
        )

        def run() -> dict[int, DayRollup]:
            rows = self._reader().execute(sql, (park, kind, first_day, last_day))
            return {int(d): DayRollup(int(d), str(s), bytes(b)) for d, s, b in rows}

        return await self._run(self._rexec, run)

    async def put_day_rollups(self, park: str, kind: str, rollups: Sequence[DayRollup]) -> None:
        if not rollups:
            return
        rows = [(park, kind, r.day, r.stamp, r.payload) for r in rollups]

        def run() -> None:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO day_rollup (park, kind, day, stamp, payload)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (park, kind, day) DO UPDATE SET"
                    " stamp = excluded.stamp, payload = excluded.payload",
                    rows,
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

        await self._run(self._wexec, run)
