"""API keys in the store: create (plaintext shown once), authenticate, revoke, bootstrap."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.ledgers import keys as keylib
from app.ledgers.audit import canonical_json
from app.ledgers.entities import Entity, append_row
from app.ledgers.errors import LedgerError
from app.ledgers.orm import ApiKeyRow
from app.ledgers.roles import ApiRole
from app.ledgers.schemas import ApiKeyCreated, ApiKeyInfo
from app.ledgers.tx import SYSTEM_ACTOR, Transactions, check_actor, check_park, now

KEYS: Entity[ApiKeyRow, ApiKeyInfo] = Entity(
    kind="key",
    label="API key",
    row=ApiKeyRow,
    record=ApiKeyInfo,
    order=(ApiKeyRow.created_at, ApiKeyRow.id),
    parked=False,
    audit_object=lambda row: f"key/{row.id}",
    revoke_details=lambda row, _reason: {"id": row.id, "role": row.role},
)


def _details(row: ApiKeyRow, **extra: Any) -> dict[str, Any]:
    return {"id": row.id, "role": row.role, **extra}


def create_key(
    tx: Transactions, role: ApiRole | str, label: str, actor: str, parks: Iterable[str] | None
) -> ApiKeyCreated:
    api_role = ApiRole(role)
    if len(label) > 200:
        raise ValueError("label longer than 200 characters")
    scope = None if parks is None else sorted({check_park(p) for p in parks})
    if scope is not None and not scope:
        raise ValueError("a key scoped to parks needs at least one park")
    if scope is not None and api_role is ApiRole.ADMIN:
        raise ValueError("admin keys cover every park (they create keys): no park scope")
    key_id = keylib.new_key_id()
    plaintext = keylib.new_plaintext_key(key_id)
    with tx.write() as session:
        row = ApiKeyRow(
            id=key_id,
            key_hash=keylib.hash_key(plaintext),
            role=api_role.value,
            label=label,
            parks=None if scope is None else canonical_json(scope),
            created_at=now(),
            created_by=check_actor(actor),
        )
        append_row(
            session,
            row,
            actor,
            "key.create",
            KEYS.object_of(row),
            _details(row, label=label, parks=scope),
        )
        return ApiKeyCreated(**KEYS.read(row).model_dump(), key=plaintext)


def authenticate(tx: Transactions, key: str) -> ApiKeyInfo | None:
    if not key:
        return None
    digest = keylib.hash_key(key)
    with tx.read() as session:
        row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.key_hash, digest):
            return None
        return KEYS.read(row)


def refuse_last_admin(session: Session, row: ApiKeyRow) -> None:
    """The `revoke` guard for keys: never revoke the last active admin key (lock-out)."""
    if row.role != ApiRole.ADMIN.value:
        return
    admins = session.scalar(
        select(func.count())
        .select_from(ApiKeyRow)
        .where(ApiKeyRow.role == ApiRole.ADMIN.value, ApiKeyRow.revoked_at.is_(None))
    )
    if (admins or 0) <= 1:
        raise LedgerError("refusing to revoke the last active admin key")


def bootstrap_admin(tx: Transactions, key: str) -> ApiKeyInfo:
    if len(key) < keylib.MIN_BOOTSTRAP_LEN:
        raise ValueError(
            f"bootstrap admin key must be at least {keylib.MIN_BOOTSTRAP_LEN} characters"
        )
    digest = keylib.hash_key(key)
    key_id = keylib.BOOTSTRAP_KEY_ID
    with tx.write() as session:
        row = session.get(ApiKeyRow, key_id)
        if row is not None and row.key_hash == digest:
            return KEYS.read(row)
        clash = session.scalar(select(ApiKeyRow.id).where(ApiKeyRow.key_hash == digest))
        if clash is not None:
            raise LedgerError(f"bootstrap key is already in use as API key {clash!r}")
        if row is None:
            row = ApiKeyRow(
                id=key_id,
                key_hash=digest,
                role=ApiRole.ADMIN.value,
                label="LINGTAN_BOOTSTRAP_ADMIN_KEY",
                created_at=now(),
                created_by=SYSTEM_ACTOR,
            )
            action = "key.bootstrap"
        else:
            row.key_hash = digest
            row.role = ApiRole.ADMIN.value
            row.revoked_at = None
            row.revoked_by = None
            action = "key.bootstrap_rotate"
        append_row(session, row, SYSTEM_ACTOR, action, KEYS.object_of(row), _details(row))
        return KEYS.read(row)
