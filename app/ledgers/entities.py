"""One append/get/list/revoke discipline for the ledger entities (rows with an id), audited.

Every entity (certificates, offsets, corrections, API keys) is an `Entity`: its table, the
record it reads back as, the name its audit actions and messages use, and how its audit
entries name it. `add` appends a row and its audit entry in the same transaction, `revoke`
soft-revokes one (kept, its id stays taken) the same way; `get`/`list_records` read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.ledgers.audit_store import append_audit
from app.ledgers.errors import AlreadyRevokedError, DuplicateIdError, NotFoundError
from app.ledgers.orm import Base
from app.ledgers.rows import row_ref
from app.ledgers.tx import Transactions, check_actor, now

R = TypeVar("R", bound=Base)
M = TypeVar("M", bound=BaseModel)


def _park_object(kind: str) -> Callable[[Any], str]:
    return lambda row: f"park/{row.park}/{kind}/{row.id}"


def _park_revoke_details(row: Any, reason: str) -> dict[str, Any]:
    return {"park": row.park, "id": row.id, "reason": reason}


@dataclass(frozen=True, slots=True)
class Entity(Generic[R, M]):
    """How one ledger table is appended to, read, listed and revoked."""

    #: audit action prefix (`certificate.add`, `certificate.revoke`) and DuplicateIdError table
    kind: str
    row: type[R]
    record: type[M]
    #: list order (e.g. valid_from, id)
    order: tuple[InstrumentedAttribute[Any], ...]
    #: in messages ("no API key 'k1'"); default `kind`
    label: str = ""
    #: rows belong to a park (a `park` column): get/list/revoke can be scoped to one
    parked: bool = True
    #: audit `object` of a row; default `park/<park>/<kind>/<id>`
    audit_object: Callable[[Any], str] | None = None
    #: audit details of a revocation (`row` is added); default park, id, reason
    revoke_details: Callable[[Any, str], dict[str, Any]] = _park_revoke_details

    @property
    def name(self) -> str:
        return self.label or self.kind

    def object_of(self, row: R) -> str:
        return (self.audit_object or _park_object(self.kind))(row)

    def read(self, row: R) -> M:
        return self.record.model_validate(row)


def append_row(
    session: Session, row: Base, actor: str, action: str, obj: str, details: Mapping[str, Any]
) -> None:
    """Insert `row` and its audit entry (with `details.row`, its content hash) in `session`."""
    session.add(row)
    session.flush()
    append_audit(session, actor, action, obj, {**details, "row": row_ref(row)})


def add(
    tx: Transactions,
    entity: Entity[R, M],
    entry_id: str,
    build: Callable[[Session], R],
    actor: str,
    details: Callable[[R], Mapping[str, Any]],
) -> M:
    """Append `build(session)` (DuplicateIdError if `entry_id` exists in any park, revoked
    or not) and its `<kind>.add` audit entry with `details(row)`, in one transaction.
    `build` sets `created_by` (through `check_actor`)."""
    with tx.write() as session:
        existing = session.get(entity.row, entry_id)
        if existing is not None:
            raise DuplicateIdError(entity.kind, entry_id, getattr(existing, "park", ""))
        row = build(session)
        append_row(session, row, actor, f"{entity.kind}.add", entity.object_of(row), details(row))
        return entity.read(row)


def _in_scope(row: R, park: str | None) -> bool:
    return park is None or getattr(row, "park", None) == park


def _not_found(entity: Entity[R, M], entry_id: str, park: str | None) -> NotFoundError:
    where = f" in park {park!r}" if park is not None and entity.parked else ""
    return NotFoundError(f"no {entity.name} {entry_id!r}{where}")


def get(tx: Transactions, entity: Entity[R, M], entry_id: str, park: str | None = None) -> M:
    """The entry (revoked or not); NotFoundError if absent or in another park."""
    with tx.read() as session:
        row = session.get(entity.row, entry_id)
        if row is None or not _in_scope(row, park):
            raise _not_found(entity, entry_id, park)
        return entity.read(row)


def list_records(
    tx: Transactions,
    entity: Entity[R, M],
    park: str | None,
    *,
    include_revoked: bool,
) -> list[M]:
    """A park's entries (every entry for `park` None) in the entity's order."""
    table: Any = entity.row
    stmt = select(entity.row)
    if park is not None:
        stmt = stmt.where(table.park == park)
    if not include_revoked:
        stmt = stmt.where(table.revoked_at.is_(None))
    stmt = stmt.order_by(*entity.order)
    with tx.read() as session:
        return [entity.read(r) for r in session.scalars(stmt)]


def revoke(
    tx: Transactions,
    entity: Entity[R, M],
    entry_id: str,
    actor: str,
    reason: str,
    park: str | None = None,
    *,
    guard: Callable[[Session, R], None] | None = None,
) -> M:
    """Soft-revoke one entry and write its `<kind>.revoke` audit entry in the same
    transaction. NotFoundError if absent or in another park, AlreadyRevokedError if revoked
    (nothing is written then); `guard(session, row)` may refuse (raise) before the change."""
    with tx.write() as session:
        row = session.get(entity.row, entry_id)
        if row is None or not _in_scope(row, park):
            raise _not_found(entity, entry_id, park)
        target: Any = row  # every revocable table has revoked_at / revoked_by
        if target.revoked_at is not None:
            raise AlreadyRevokedError(f"{entity.name} {entry_id!r} is already revoked")
        if guard is not None:
            guard(session, row)
        target.revoked_at = now()
        target.revoked_by = check_actor(actor)
        if hasattr(target, "revoke_reason"):  # ledger rows; API keys keep no reason
            target.revoke_reason = reason
        session.flush()
        append_audit(
            session,
            actor,
            f"{entity.kind}.revoke",
            entity.object_of(row),
            {**entity.revoke_details(row, reason), "row": row_ref(row)},
        )
        return entity.read(row)
