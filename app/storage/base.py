"""Storage contract: the write batch, the async `Storage` protocol and its two error kinds."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from app.intervals.models import IntervalEnergy
from app.telemetry.models import DeadLetter, Reading, RejectReason

_JSON_VERSION = 1

#: "Until the end of time" for range queries (year 2262, the int64 ns limit).
FAR_NS = 2**63 - 1

#: Interval energies summed per role by `Storage.interval_role_sums`.
ROLE_SUM_FIELDS = ("energy_import_kwh", "energy_export_kwh", "energy_kwh")

#: Change markers are kept per park and UTC day: `start_ns // NS_PER_DAY` of the intervals.
NS_PER_DAY = 86_400 * 1_000_000_000

#: A device's stored history from `start_ns` on: `(start_ns, readings oldest first)`.
History = tuple[int, list[Reading]]


class StorageError(Exception):
    """Base of storage failures."""


class StorageUnavailable(StorageError):
    """The store cannot take the data now (refused/reset/timeout/5xx/auth): retry later."""


class StorageRejected(StorageError):
    """The store refused the data itself (4xx, e.g. field type conflict): retrying won't help."""


@dataclass(frozen=True, slots=True)
class RoleSums:
    """Interval rows of one role starting at `start_ns`, summed (see `interval_role_sums`)."""

    start_ns: int
    end_ns: int
    role: str
    rows: int
    estimated: int
    #: the sums of `ROLE_SUM_FIELDS` (0.0 where absent)
    sums: dict[str, float]


#: (start_ns, device, estimated, flags) of one flagged interval row
FlaggedRow = tuple[int, str, bool, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class DayRollup:
    """What the balance computed for one park and day, kept in the store so that no process
    computes it twice (docs/storage.md, "Day rollups").

    Opaque to the store: the balance encodes `payload` and `stamp` (the identity of every
    input it was computed from) and uses a rollup only while the stamp it expects is this one.
    `day` counts days from 1970-01-01 (UTC days or local dates, as the kind says).
    """

    day: int
    stamp: str
    payload: bytes


def changed_days(intervals: Iterable[IntervalEnergy]) -> dict[str, set[int]]:
    """Per park, the UTC days (`start_ns // NS_PER_DAY`) that a write of `intervals` touches:
    what a store records as change markers beside the data (docs/storage.md, "Change
    markers")."""
    out: dict[str, set[int]] = {}
    for iv in intervals:
        out.setdefault(iv.park, set()).add(iv.start_ns // NS_PER_DAY)
    return out


def new_change_token() -> int:
    """A token unique to one write (62 random bits: positive in every store's integer)."""
    return secrets.randbits(62) | 1


@dataclass(slots=True)
class WriteBatch:
    """Points to write together. Order inside each list is kept (later wins on equal keys)."""

    readings: list[Reading] = field(default_factory=list)
    intervals: list[IntervalEnergy] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.readings) + len(self.intervals) + len(self.deadletters)

    @property
    def is_empty(self) -> bool:
        return not (self.readings or self.intervals or self.deadletters)

    def split(self) -> tuple[WriteBatch, WriteBatch]:
        """Two halves (by item count, in order) — used to isolate rejected points."""
        half = len(self) // 2
        nr = min(len(self.readings), half)
        ni = min(len(self.intervals), half - nr)
        nd = half - nr - ni
        a = WriteBatch(self.readings[:nr], self.intervals[:ni], self.deadletters[:nd])
        b = WriteBatch(self.readings[nr:], self.intervals[ni:], self.deadletters[nd:])
        return a, b

    @staticmethod
    def concat(batches: Iterable[WriteBatch]) -> WriteBatch:
        """One batch holding all items of `batches`, in order."""
        out = WriteBatch()
        for b in batches:
            out.readings.extend(b.readings)
            out.intervals.extend(b.intervals)
            out.deadletters.extend(b.deadletters)
        return out

    def to_json(self) -> bytes:
        """Lossless JSON for the spool (floats via repr, raw bytes as base64)."""
        doc = {
            "v": _JSON_VERSION,
            "r": [
                [r.park, r.device, r.ts_ns, r.values, r.reset, r.ts_source] for r in self.readings
            ],
            "i": [
                [
                    i.park,
                    i.device,
                    i.role,
                    i.start_ns,
                    i.end_ns,
                    i.values,
                    i.estimated,
                    list(i.flags),
                ]
                for i in self.intervals
            ],
            "d": [
                [
                    d.received_ns,
                    d.topic,
                    d.park,
                    d.device,
                    d.reason.value,
                    d.detail,
                    base64.b64encode(d.raw).decode("ascii"),
                ]
                for d in self.deadletters
            ],
        }
        # allow_nan (the default) keeps NaN/inf round-tripping; the encoder rejects them later.
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> WriteBatch:
        doc: dict[str, Any] = json.loads(data)
        if doc.get("v") != _JSON_VERSION:
            raise ValueError(f"unsupported WriteBatch JSON version {doc.get('v')!r}")
        return cls(
            readings=[
                Reading(
                    park=p,
                    device=d,
                    ts_ns=ts,
                    values={k: float(v) for k, v in vals.items()},
                    reset=reset,
                    ts_source=src,
                )
                for p, d, ts, vals, reset, src in doc["r"]
            ],
            intervals=[
                IntervalEnergy(
                    park=p,
                    device=d,
                    role=role,
                    start_ns=s,
                    end_ns=e,
                    values={k: float(v) for k, v in vals.items()},
                    estimated=est,
                    flags=tuple(flags),
                )
                for p, d, role, s, e, vals, est, flags in doc["i"]
            ],
            deadletters=[
                DeadLetter(
                    received_ns=ts,
                    topic=topic,
                    park=p,
                    device=d,
                    reason=RejectReason(reason),
                    detail=detail,
                    raw=base64.b64decode(raw),
                )
                for ts, topic, p, d, reason, detail, raw in doc["d"]
            ],
        )


@runtime_checkable
class Storage(Protocol):
    """What the collector and the API need from a time-series store (all times epoch ns)."""

    async def write(self, batch: WriteBatch) -> None:
        """Write all points (idempotent: same key + time overwrites). Raises StorageError."""
        ...

    async def ping(self) -> bool:
        """True when the store answers."""
        ...

    async def readings(
        self, park: str, start_ns: int, end_ns: int, device: str | None = None
    ) -> list[Reading]:
        """Raw readings in [start_ns, end_ns), time-ordered."""
        ...

    async def intervals(
        self, park: str, start_ns: int, end_ns: int, device: str | None = None
    ) -> list[IntervalEnergy]:
        """Interval energies whose start is in [start_ns, end_ns), time-ordered."""
        ...

    async def deadletters(
        self,
        park: str | None,
        start_ns: int | None,
        end_ns: int | None,
        limit: int = 1000,
    ) -> list[DeadLetter]:
        """Dead letters received in [start_ns, end_ns) (open ends when None), oldest first."""
        ...

    async def last_readings(
        self, park: str, device: str, before_ns: int, limit: int
    ) -> list[Reading]:
        """The latest `limit` readings strictly before `before_ns`, returned oldest-first."""
        ...

    async def histories(
        self, park: str, first_ns: Mapping[str, int], align: Callable[[int], int]
    ) -> dict[str, History]:
        """For each device of `park` in `first_ns`, what a restarted interval engine needs
        (docs/intervals.md, "restart"): let `p` be its latest reading before
        `first_ns[device]` and `S = align(p.ts_ns)` (the start of p's interval); the
        answer is `(S, [latest reading before S, every reading from S on])`, oldest first,
        or `(align(first_ns[device]), [])` when it has no reading before that.

        Same answer as `histories_one_by_one`, in a few store requests for the whole
        mapping instead of three per device (a restart meets every device of a park).
        """
        ...

    async def interval_series(self, park: str) -> set[tuple[str, str]]:
        """Every (device, role) that intervals of `park` were ever written under."""
        ...

    async def interval_role_sums(
        self,
        park: str,
        start_ns: int,
        end_ns: int,
        roles: Sequence[str],
        *,
        interval_ns: int,
        fields: Sequence[str] = ROLE_SUM_FIELDS,
        estimated: bool = True,
    ) -> list[RoleSums]:
        """Per interval start in [start_ns, end_ns) and stored role (one of `roles`): row
        count, estimated rows (0 when `estimated` is False and counting them costs the store
        a query) and the sums of `fields` (of `ROLE_SUM_FIELDS`; a store may
        sum the others too, or report them as 0.0), ordered by start then role.
        `interval_ns` is the park's interval length (the row's `end_ns` where the store
        does not keep it). The role is the one stored with each row: check
        `interval_series` against the registry before trusting it."""
        ...

    async def flagged_intervals(
        self, park: str, start_ns: int, end_ns: int, roles: Sequence[str]
    ) -> list[FlaggedRow]:
        """Interval rows of `roles` starting in [start_ns, end_ns) that are estimated or carry
        any flag, as (start_ns, device, estimated, flags): what stands behind summed rows
        (docs/intervals.md, "Quality travels with the numbers"). Such rows are rare."""
        ...

    async def interval_changes(self, park: str) -> dict[int, int]:
        """The change markers of `park`: UTC day (`start_ns // NS_PER_DAY`) → the token of
        the last write of intervals starting that day (docs/storage.md, "Change markers").

        Every `write` with intervals records a fresh token for each day it touches, once
        the intervals are readable, so a reader that cached what it read together with the
        tokens it saw before reading knows exactly which days changed since."""
        ...

    async def day_rollups(
        self, park: str, kind: str, first_day: int, last_day: int, *, payload: bool = True
    ) -> dict[int, DayRollup]:
        """The stored rollups of `park` and `kind` for days `first_day..last_day`
        (inclusive), by day; with `payload=False` only their stamps (payload `b""`)."""
        ...

    async def put_day_rollups(self, park: str, kind: str, rollups: Sequence[DayRollup]) -> None:
        """Store `rollups` of `park` and `kind`, each replacing the one of its day. Raises
        StorageError."""
        ...

    async def close(self) -> None: ...


async def histories_one_by_one(
    storage: Storage,
    park: str,
    first_ns: Mapping[str, int],
    align: Callable[[int], int],
    *,
    concurrency: int = 16,
) -> dict[str, History]:
    """`Storage.histories` spelled out with three single-device queries per device, up to
    `concurrency` devices at a time: the reference the batched implementations are tested
    against and the benchmark's baseline (it was the collector's own path)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(device: str, ts_ns: int) -> History:
        async with sem:
            pred = await storage.last_readings(park, device, ts_ns, 1)
            if not pred:
                return align(ts_ns), []
            start_ns = align(pred[-1].ts_ns)
            before = await storage.last_readings(park, device, start_ns, 1)
            rest = await storage.readings(park, start_ns, FAR_NS, device)
            return start_ns, [*before, *rest]

    devices = list(first_ns)
    found = await asyncio.gather(*(one(d, first_ns[d]) for d in devices))
    return dict(zip(devices, found, strict=True))
