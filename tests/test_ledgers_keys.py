"""API keys: create/verify/revoke, secrets never stored, bootstrap admin; both backends."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from app.ledgers import AlreadyRevokedError, ApiRole, LedgerError, LedgerStore, NotFoundError

BOOT = "boot-admin-key-0123456789"


@pytest.fixture
def store(sql_url: str) -> Iterator[LedgerStore]:
    s = LedgerStore(sql_url)
    yield s
    s.close()


def test_create_verify_revoke(store: LedgerStore) -> None:
    created = store.create_key("manager", label="energy team", actor="bootstrap")
    assert created.key.startswith(f"lt_{created.id}_")
    assert len(created.key) >= 40
    assert store.verify_key(created.key) is ApiRole.MANAGER
    info = store.authenticate(created.key)
    assert info is not None and info.id == created.id and info.label == "energy team"

    assert store.verify_key(created.key + "x") is None
    assert store.verify_key(created.key[:-1]) is None
    assert store.verify_key("") is None

    store.create_key(ApiRole.ADMIN)
    revoked = store.revoke_key(created.id, actor="kadmin")
    assert revoked.revoked and revoked.revoked_by == "kadmin"
    assert store.verify_key(created.key) is None
    with pytest.raises(AlreadyRevokedError):
        store.revoke_key(created.id)
    with pytest.raises(NotFoundError):
        store.revoke_key("knothere")
    assert [e.action for e in store.list_audit()] == ["key.create", "key.create", "key.revoke"]


def test_two_keys_distinct_roles(store: LedgerStore) -> None:
    v = store.create_key("viewer")
    a = store.create_key("auditor")
    assert v.key != a.key and v.id != a.id
    assert store.verify_key(v.key) is ApiRole.VIEWER
    assert store.verify_key(a.key) is ApiRole.AUDITOR
    with pytest.raises(ValueError):
        store.create_key("root")


def test_secret_is_never_stored_or_listed(store: LedgerStore, sql_url: str) -> None:
    created = store.create_key("admin", label="ops")
    listed = store.list_keys()
    assert [k.id for k in listed] == [created.id]
    assert created.key not in repr(listed) and "key" not in listed[0].model_dump()
    engine = create_engine(sql_url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM api_keys"))]
        audit = [tuple(r) for r in conn.execute(text("SELECT * FROM audit_log"))]
    engine.dispose()
    dumped = repr(rows) + repr(audit)
    secret = created.key.split("_", 2)[2]
    assert secret not in dumped and created.key not in dumped
    assert hashlib.sha256(created.key.encode()).hexdigest() in dumped


def test_bootstrap_admin_is_idempotent(store: LedgerStore) -> None:
    first = store.bootstrap_admin(BOOT)
    again = store.bootstrap_admin(BOOT)
    assert first == again and first.id == "bootstrap" and first.role is ApiRole.ADMIN
    assert store.verify_key(BOOT) is ApiRole.ADMIN
    assert len(store.list_keys()) == 1
    assert [e.action for e in store.list_audit()] == ["key.bootstrap"]


def test_bootstrap_rotation_and_weak_key(store: LedgerStore) -> None:
    store.bootstrap_admin(BOOT)
    new = "another-boot-key-abcdefgh"
    store.bootstrap_admin(new)
    assert store.verify_key(BOOT) is None
    assert store.verify_key(new) is ApiRole.ADMIN
    assert len(store.list_keys()) == 1
    with pytest.raises(ValueError, match="at least 16"):
        store.bootstrap_admin("short")
    assert [e.action for e in store.list_audit()] == ["key.bootstrap", "key.bootstrap_rotate"]


def test_last_admin_cannot_be_revoked(store: LedgerStore) -> None:
    store.bootstrap_admin(BOOT)
    with pytest.raises(LedgerError, match="last active admin"):
        store.revoke_key("bootstrap")
    other = store.create_key("admin")
    store.revoke_key("bootstrap")
    assert store.verify_key(BOOT) is None
    # Same key from the environment on the next start: an explicit revocation sticks.
    store.bootstrap_admin(BOOT)
    assert store.verify_key(BOOT) is None
    assert store.verify_key(other.key) is ApiRole.ADMIN
