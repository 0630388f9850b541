"""The audit log in the database: append an entry, list, head, verify, adopt unaudited rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import false, or_, select
from sqlalchemy.orm import Session

from app.ledgers.audit import GENESIS_HASH, StoredEntry, canonical_json, entry_hash, verify_chain
from app.ledgers.orm import LEDGER_TABLES, AuditRow
from app.ledgers.rows import RowRefs, collect_row_ref, compare_rows, row_digest, row_id, row_ref
from app.ledgers.schemas import AuditEntry, AuditProblem
from app.ledgers.tx import Transactions, check_actor, now


def append_audit(
    session: Session, actor: str, action: str, obj: str, details: Mapping[str, Any]
) -> AuditRow:
    """Append one entry after the current tail, in the caller's write transaction."""
    tail = session.execute(
        select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (tail[0] + 1, tail[1]) if tail else (1, GENESIS_HASH)
    ts = now()
    details_text = canonical_json(dict(details))
    details_obj = json.loads(details_text)
    row = AuditRow(
        seq=seq,
        ts=ts,
        actor=check_actor(actor),
        action=action,
        object=obj,
        details=details_text,
        prev_hash=prev_hash,
        hash=entry_hash(
            seq=seq,
            ts=ts,
            actor=actor,
            action=action,
            obj=obj,
            details=details_obj,
            prev_hash=prev_hash,
        ),
    )
    session.add(row)
    session.flush()
    return row


def to_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        object=row.object,
        details=json.loads(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def record(
    tx: Transactions, actor: str, action: str, obj: str, details: Mapping[str, Any]
) -> AuditEntry:
    with tx.write() as session:
        return to_entry(append_audit(session, actor, action, obj, details))


def list_entries(
    tx: Transactions, after_seq: int, limit: int, parks: Iterable[str] | None
) -> list[AuditEntry]:
    stmt = select(AuditRow).where(AuditRow.seq > after_seq)
    if parks is not None:
        stmt = stmt.where(
            or_(
                false(),
                *(AuditRow.object.startswith(f"park/{p}/", autoescape=True) for p in parks),
            )
        )
    stmt = stmt.order_by(AuditRow.seq).limit(max(1, min(limit, 10_000)))
    with tx.read() as session:
        return [to_entry(r) for r in session.scalars(stmt)]


def head(tx: Transactions) -> tuple[int, str]:
    with tx.read() as session:
        tail = session.execute(
            select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
        ).first()
        return (tail[0], tail[1]) if tail else (0, GENESIS_HASH)


def verify(
    tx: Transactions, anchor: tuple[int, str] | None, anchors: Iterable[tuple[int, str]]
) -> list[AuditProblem]:
    """The chain, then every ledger row against the hash its latest entry recorded."""
    stmt = select(AuditRow).order_by(AuditRow.seq).execution_options(yield_per=1000)
    refs: RowRefs = {}
    with tx.read() as session:

        def entries() -> Iterator[StoredEntry]:
            for r in session.scalars(stmt):
                collect_row_ref(refs, r.seq, r.details)
                yield StoredEntry(
                    seq=r.seq,
                    ts=r.ts,
                    actor=r.actor,
                    action=r.action,
                    object=r.object,
                    details=r.details,
                    prev_hash=r.prev_hash,
                    hash=r.hash,
                )

        problems = verify_chain(entries(), anchor, anchors=anchors)
        return problems + compare_rows(refs, row_digests(session))


def adopt_unaudited_rows(tx: Transactions, actor: str, reason: str) -> list[str]:
    """One `row.adopt` entry per ledger row that has no audit entry at all; `table/id` each."""
    check_actor(actor)
    adopted: list[str] = []
    with tx.write() as session:
        refs: RowRefs = {}
        for seq, text in session.execute(select(AuditRow.seq, AuditRow.details)):
            collect_row_ref(refs, seq, text)
        for model in LEDGER_TABLES:
            for row in session.scalars(select(model)):
                rid = row_id(row)
                if (model.__tablename__, rid) in refs:
                    continue
                park = getattr(row, "park", None)
                obj = (
                    f"park/{park}/{model.__tablename__}/{rid}"
                    if park
                    else f"{model.__tablename__}/{rid}"
                )
                details: dict[str, Any] = {"reason": reason, "row": row_ref(row)}
                if park:
                    details["park"] = park
                append_audit(session, actor, "row.adopt", obj, details)
                adopted.append(f"{model.__tablename__}/{rid}")
    return adopted


def row_digests(session: Session) -> Iterator[tuple[str, str, str, str | None]]:
    """(table, row id, content hash, park) of every row of every ledger table."""
    for model in LEDGER_TABLES:
        stmt = select(model).execution_options(yield_per=1000)
        for row in session.scalars(stmt):
            park = getattr(row, "park", None)
            yield model.__tablename__, row_id(row), row_digest(row), park
