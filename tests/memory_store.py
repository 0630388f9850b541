"""An in-memory stand-in for the balance's read path of `Storage` and the ledger store, so a
property test can run thousands of interleavings of writes, ledger edits and queries.

It is not a backend: the real stores pass the shared contract tests
(tests/test_storage_contract.py); this one keeps only what the balance reads, with the same
meaning (rows keyed by park, device and start; a fresh change token per write and day).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from app.accounting import Certificate, Offset
from app.corrections import Correction
from app.intervals.models import IntervalEnergy
from app.storage.base import (
    ROLE_SUM_FIELDS,
    DayRollup,
    RoleSums,
    WriteBatch,
    changed_days,
    new_change_token,
)


@dataclass
class MemoryIntervals:
    rows: dict[tuple[str, str, int], IntervalEnergy] = field(default_factory=dict)
    changes: dict[str, dict[int, int]] = field(default_factory=dict)
    rollups: dict[tuple[str, str, int], DayRollup] = field(default_factory=dict)

    async def write(self, batch: WriteBatch) -> None:
        for iv in batch.intervals:
            self.rows[(iv.park, iv.device, iv.start_ns)] = iv
        token = new_change_token()
        for park, days in changed_days(batch.intervals).items():
            for day in days:
                self.changes.setdefault(park, {})[day] = token

    async def intervals(
        self, park: str, start_ns: int, end_ns: int, device: str | None = None
    ) -> list[IntervalEnergy]:
        out = [
            r
            for (p, d, s), r in self.rows.items()
            if p == park and start_ns <= s < end_ns and (device is None or d == device)
        ]
        return sorted(out, key=lambda r: (r.start_ns, r.device))

    async def interval_series(self, park: str) -> set[tuple[str, str]]:
        return {(r.device, r.role) for (p, _, _), r in self.rows.items() if p == park}

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
        groups: dict[tuple[int, str], list[IntervalEnergy]] = {}
        for r in await self.intervals(park, start_ns, end_ns):
            if r.role in roles:
                groups.setdefault((r.start_ns, r.role), []).append(r)
        return [
            RoleSums(
                s,
                s + interval_ns,
                role,
                len(rs),
                sum(1 for r in rs if r.estimated),
                {f: sum(r.values.get(f, 0.0) for r in rs) for f in ROLE_SUM_FIELDS},
            )
            for (s, role), rs in sorted(groups.items())
        ]

    async def flagged_intervals(
        self, park: str, start_ns: int, end_ns: int, roles: Sequence[str]
    ) -> list[tuple[int, str, bool, tuple[str, ...]]]:
        return [
            (r.start_ns, r.device, r.estimated, r.flags)
            for r in await self.intervals(park, start_ns, end_ns)
            if r.role in roles and (r.estimated or r.flags)
        ]

    async def interval_changes(self, park: str) -> dict[int, int]:
        return dict(self.changes.get(park, {}))

    async def day_rollups(
        self, park: str, kind: str, first_day: int, last_day: int, *, payload: bool = True
    ) -> dict[int, DayRollup]:
        return {
            d: r if payload else DayRollup(r.day, r.stamp, b"")
            for (p, k, d), r in self.rollups.items()
            if p == park and k == kind and first_day <= d <= last_day
        }

    async def put_day_rollups(self, park: str, kind: str, rollups: Sequence[DayRollup]) -> None:
        for r in rollups:
            self.rollups[(park, kind, r.day)] = r


@dataclass
class MemoryLedgers:
    """Certificates, offsets and corrections with an audit head that moves on every edit."""

    certificates: dict[str, Certificate] = field(default_factory=dict)
    offsets: dict[str, Offset] = field(default_factory=dict)
    corrections: list[Correction] = field(default_factory=list)
    seq: int = 0

    def edited(self) -> None:
        self.seq += 1

    def audit_head(self) -> tuple[int, str]:
        return self.seq, f"h{self.seq}"

    def certificates_for(self, park: str) -> list[Certificate]:
        return [c for c in self.certificates.values() if c.park == park]

    def offsets_for(self, park: str) -> list[Offset]:
        return [o for o in self.offsets.values() if o.park == park]

    def corrections_for(self, park: str) -> list[Correction]:
        return list(self.corrections)
