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
        if entry.seq != expected_seq:
            if entry.seq > expected_seq:
                missing = (
                    f"seq {expected_seq}"
                    if entry.seq == expected_seq + 1
                    else f"seq {expected_seq}..{entry.seq - 1}"
                )
                problems.append(
                    AuditProblem(
                        seq=expected_seq,
                        kind="missing",
                        message=f"audit entries deleted: {missing} missing before seq {entry.seq}",
                    )
                )
            else:  # cannot happen with seq as primary key, kept for safety
                problems.append(
                    AuditProblem(seq=entry.seq, kind="unreadable", message="seq out of order")
                )
        elif entry.prev_hash != prev_hash:
            if entry.seq == 1:
                problems.append(
                    AuditProblem(
                        seq=1, kind="bad_genesis", message="seq 1 does not start from genesis"
                    )
                )
            else:
                problems.append(
                    AuditProblem(
                        seq=entry.seq,
                        kind="chain_broken",
                        message=(
                            f"seq {entry.seq} does not link to seq {entry.seq - 1}: entry "
                            f"{entry.seq - 1} was rewritten (hash recomputed) or the link of "
                            f"{entry.seq} was edited"
                        ),
                    )
                )
        try:
            details = json.loads(entry.details)
        except ValueError:
            problems.append(
                AuditProblem(
                    seq=entry.seq, kind="edited", message=f"seq {entry.seq}: details not JSON"
                )
            )
        else:
            recomputed = entry_hash(
                seq=entry.seq,
                ts=entry.ts,
                actor=entry.actor,
                action=entry.action,
                obj=entry.object,
                details=details,
                prev_hash=entry.prev_hash,
            )
            if recomputed != entry.hash:
                problems.append(
                    AuditProblem(
                        seq=entry.seq,
                        kind="edited",
                        message=f"seq {entry.seq} was edited: its content no longer matches "
                        "its hash",
                    )
                )
        if entry.seq in wanted:
            seen[entry.seq] = entry.hash
        expected_seq = entry.seq + 1
        prev_hash = entry.hash
    for anchor_seq, anchor_hash in recorded:
        if anchor_seq >= expected_seq:
            problems.append(
                AuditProblem(
                    seq=anchor_seq,
                    kind="head_mismatch",
                    message=f"log ends at seq {expected_seq - 1} but seq {anchor_seq} was "
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
