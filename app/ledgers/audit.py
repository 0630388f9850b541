"""Audit-chain hashing and verification (pure: no database access here)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.ledgers.schemas import AuditProblem

#: prev_hash of the first entry.
GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_ts(ts: datetime) -> str:
    """UTC, microsecond precision: what both SQLite and PostgreSQL round-trip exactly."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    *,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    obj: str,
    details: Any,
    prev_hash: str,
) -> str:
    """sha256 hex of canonical JSON of the entry's content followed by prev_hash."""
    body = canonical_json(
        {
            "seq": seq,
            "ts": canonical_ts(ts),
            "actor": actor,
            "action": action,
            "object": obj,
            "details": details,
        }
    )
    return hashlib.sha256((body + prev_hash).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An audit row as read back from the database (details still as stored text)."""

    seq: int
    ts: datetime
    actor: str
    action: str
    object: str
    details: str
    prev_hash: str
    hash: str


def _link_problem(entry: StoredEntry, expected_seq: int, prev_hash: str) -> AuditProblem | None:
    """What is wrong with `entry`'s place in the chain: a gap before it, or a broken link."""
    if entry.seq != expected_seq:
        if entry.seq < expected_seq:  # cannot happen with seq as primary key, kept for safety
            return AuditProblem(seq=entry.seq, kind="unreadable", message="seq out of order")
        missing = (
            f"seq {expected_seq}"
            if entry.seq == expected_seq + 1
            else f"seq {expected_seq}..{entry.seq - 1}"
        )
        return AuditProblem(
            seq=expected_seq,
            kind="missing",
            message=f"audit entries deleted: {missing} missing before seq {entry.seq}",
        )
    if entry.prev_hash == prev_hash:
        return None
    if entry.seq == 1:
        return AuditProblem(seq=1, kind="bad_genesis", message="seq 1 does not start from genesis")
    return AuditProblem(
        seq=entry.seq,
        kind="chain_broken",
        message=(
            f"seq {entry.seq} does not link to seq {entry.seq - 1}: entry "
            f"{entry.seq - 1} was rewritten (hash recomputed) or the link of "
            f"{entry.seq} was edited"
        ),
    )


def _content_problem(entry: StoredEntry) -> AuditProblem | None:
    """Whether `entry`'s content still matches its stored hash."""
    try:
        details = json.loads(entry.details)
    except ValueError:
        return AuditProblem(
            seq=entry.seq, kind="edited", message=f"seq {entry.seq}: details not JSON"
        )
    recomputed = entry_hash(
        seq=entry.seq,
        ts=entry.ts,
        actor=entry.actor,
        action=entry.action,
        obj=entry.object,
        details=details,
        prev_hash=entry.prev_hash,
    )
    if recomputed == entry.hash:
        return None
    return AuditProblem(
        seq=entry.seq,
        kind="edited",
        message=f"seq {entry.seq} was edited: its content no longer matches its hash",
    )


def _anchor_problems(
    recorded: list[tuple[int, str]], seen: dict[int, str], last_seq: int
) -> list[AuditProblem]:
    """Anchors (seq, hash) recorded earlier that the log, ending at `last_seq`, no longer
    holds: a deleted tail, or a rewritten entry (`seen`: the hashes the log has now)."""
    problems: list[AuditProblem] = []
    for anchor_seq, anchor_hash in recorded:
        if anchor_seq > last_seq:
            problems.append(
                AuditProblem(
                    seq=anchor_seq,
                    kind="head_mismatch",
                    message=f"log ends at seq {last_seq} but seq {anchor_seq} was "
                    "recorded earlier: the tail was deleted",
                )
            )
        elif anchor_seq > 0 and seen.get(anchor_seq) != anchor_hash:
            problems.append(
                AuditProblem(
                    seq=anchor_seq,
                    kind="head_mismatch",
                    message=f"seq {anchor_seq} no longer has the hash recorded earlier",
                )
            )
    return problems


def verify_chain(
    entries: Iterable[StoredEntry],
    anchor: tuple[int, str] | None = None,
    *,
    anchors: Iterable[tuple[int, str]] = (),
) -> list[AuditProblem]:
    """Check entries (in seq order) form one unbroken chain from seq 1.

    Finds edited entries (stored hash differs from recomputed), deleted entries (gap in seq),
    rewritten entries (an entry re-hashed after editing: its successor's prev_hash no longer
    matches) and, given `anchor` = (seq, hash) recorded elsewhere earlier (or several, e.g.
    signed checkpoints), a truncated or rewritten tail.
    """
    recorded = [*([anchor] if anchor is not None else []), *anchors]
    wanted = {seq for seq, _ in recorded}
    seen: dict[int, str] = {}
    problems: list[AuditProblem] = []
    expected_seq = 1
    prev_hash = GENESIS_HASH
    for entry in entries:
        for problem in (_link_problem(entry, expected_seq, prev_hash), _content_problem(entry)):
            if problem is not None:
                problems.append(problem)
        if entry.seq in wanted:
            seen[entry.seq] = entry.hash
        expected_seq = entry.seq + 1
        prev_hash = entry.hash
    return problems + _anchor_problems(recorded, seen, expected_seq - 1)
