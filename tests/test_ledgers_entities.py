"""The shared append/get/list/revoke rules, the same for certificates, offsets, corrections
and API keys through `LedgerStore`, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.ledgers import AlreadyRevokedError, LedgerError, LedgerStore, NotFoundError


@pytest.fixture
def store(sql_url: str) -> Iterator[LedgerStore]:
    s = LedgerStore(sql_url)
    yield s
    s.close()


def _certificate(store: LedgerStore, park: str, entry_id: str) -> None:
    store.add_certificate(
        park,
        {
            "id": entry_id,
            "kind": "gec",
            "mwh": 1.0,
            "valid_from": "2025-01-01T00:00:00Z",
            "valid_to": "2025-02-01T00:00:00Z",
        },
    )


def _offset(store: LedgerStore, park: str, entry_id: str) -> None:
    store.add_offset(park, {"id": entry_id, "kind": "ccer", "tco2": 1.0, "date": "2025-01-05"})


def _correction(store: LedgerStore, park: str, entry_id: str) -> None:
    store.add_correction(
        park,
        {
            "id": entry_id,
            "device": "grid-main",
            "quantity": "energy_import_kwh",
            "start": "2025-01-01T00:00:00Z",
            "end": "2025-01-01T01:00:00Z",
            "kind": "add",
            "amount": 5.0,
            "reason": "meter swap",
        },
    )


#: audit kind → (add, get, list, revoke) of each park ledger, all through the facade
LEDGERS: dict[str, tuple[Callable[..., None], str, str, str]] = {
    "certificate": (_certificate, "get_certificate", "list_certificates", "revoke_certificate"),
    "offset": (_offset, "get_offset", "list_offsets", "revoke_offset"),
    "correction": (_correction, "get_correction", "list_corrections", "revoke_correction"),
}


@pytest.mark.parametrize("kind", list(LEDGERS))
def test_one_rule_for_every_ledger(store: LedgerStore, kind: str) -> None:
    add, get_name, list_name, revoke_name = LEDGERS[kind]
    get: Callable[..., Any] = getattr(store, get_name)
    lister: Callable[..., list[Any]] = getattr(store, list_name)
    revoke: Callable[..., Any] = getattr(store, revoke_name)
    add(store, "a", "E1")
    add(store, "b", "E2")

    assert get("E1").park == "a" and get("E1", park="a").id == "E1"
    with pytest.raises(NotFoundError, match="in park 'b'"):
        get("E1", park="b")  # another park's id is as unknown as any other
    with pytest.raises(NotFoundError):
        get("nope")

    head = store.audit_head()
    with pytest.raises(NotFoundError):
        revoke("E1", "kadmin", "wrong park", park="b")
    with pytest.raises(NotFoundError):
        revoke("nope", "kadmin", "unknown")
    assert store.audit_head() == head  # a refused revocation writes nothing

    rec = revoke("E1", "kadmin", "double count", park="a")
    assert (rec.revoked_by, rec.revoke_reason) == ("kadmin", "double count")
    assert rec.revoked_at is not None
    seq, _ = store.audit_head()
    (entry,) = store.list_audit(after_seq=seq - 1)
    assert (entry.actor, entry.action, entry.object) == (
        "kadmin",
        f"{kind}.revoke",
        f"park/a/{kind}/E1",
    )
    assert entry.details["reason"] == "double count" and entry.details["park"] == "a"
    assert entry.details["row"]["id"] == "E1"

    with pytest.raises(AlreadyRevokedError):
        revoke("E1", "kadmin", "again")
    assert store.audit_head()[0] == seq
    assert get("E1").revoke_reason == "double count"  # the first revocation stands
    assert lister("a") == [] and [r.id for r in lister("a", include_revoked=True)] == ["E1"]
    assert [r.id for r in lister("b")] == ["E2"]
    assert store.verify_audit() == []


def test_keys_follow_the_same_rule_and_keep_their_lock_out_guard(store: LedgerStore) -> None:
    admin = store.create_key("admin", "only admin")
    viewer = store.create_key("viewer", "grafana")
    head = store.audit_head()
    with pytest.raises(LedgerError, match="last active admin"):
        store.revoke_key(admin.id, "kadmin")
    with pytest.raises(NotFoundError, match="no API key 'knope'"):
        store.revoke_key("knope", "kadmin")
    assert store.audit_head() == head and store.get_key(admin.id).revoked_at is None

    info = store.revoke_key(viewer.id, admin.id)
    assert info.revoked_by == admin.id
    (entry,) = store.list_audit(after_seq=head[0])
    assert (entry.action, entry.object, entry.actor) == (
        "key.revoke",
        f"key/{viewer.id}",
        admin.id,
    )
    assert entry.details["role"] == "viewer" and "reason" not in entry.details
    with pytest.raises(AlreadyRevokedError, match="API key"):
        store.revoke_key(viewer.id, admin.id)
    assert [k.id for k in store.list_keys(include_revoked=False)] == [admin.id]
    assert store.verify_audit() == []
