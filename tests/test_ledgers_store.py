"""Certificates, offsets and versioned documents in the ledger store, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.accounting.ledger_types import Certificate, Offset
from app.ledgers import (
    AlreadyRevokedError,
    DuplicateIdError,
    LedgerStore,
    NotFoundError,
    VersionConflictError,
)


@pytest.fixture
def store(sql_url: str) -> Iterator[LedgerStore]:
    s = LedgerStore(sql_url)
    yield s
    s.close()


def gec(cid: str, mwh: float = 10.0, month: int = 1, **kw: object) -> dict[str, object]:
    return {
        "id": cid,
        "kind": "gec",
        "mwh": mwh,
        "valid_from": f"2025-{month:02d}-01T00:00:00+08:00",
        "valid_to": f"2025-{month + 1:02d}-01T00:00:00+08:00",
        "source": "greenenergy.org.cn",
        **kw,
    }


def test_add_get_list_certificate_stores_utc(store: LedgerStore) -> None:
    rec = store.add_certificate("shenfu-demo", gec("GEC-1", 12.5), actor="kabc")
    # 2025-01-01 00:00 in UTC+8 is 2024-12-31 16:00 UTC.
    jan1_utc = datetime(2024, 12, 31, 16, 0, tzinfo=UTC)
    assert rec.valid_from == jan1_utc
    assert rec.created_by == "kabc" and not rec.revoked

    got = store.get_certificate("GEC-1")
    assert got.valid_from == jan1_utc and got.valid_from.utcoffset() is not None
    assert got.valid_to == datetime(2025, 1, 31, 16, 0, tzinfo=UTC)
    assert got.mwh == 12.5 and got.park == "shenfu-demo" and got.kind == "gec"

    assert store.certificates_for("shenfu-demo") == [
        Certificate(
            id="GEC-1",
            park="shenfu-demo",
            kind="gec",
            mwh=12.5,
            valid_from=jan1_utc,
            valid_to=datetime(2025, 1, 31, 16, 0, tzinfo=UTC),
            source="greenenergy.org.cn",
        )
    ]


def test_list_is_per_park_and_ordered(store: LedgerStore) -> None:
    store.add_certificate("a", gec("A-mar", month=3))
    store.add_certificate("a", gec("A-jan", month=1))
    store.add_certificate("b", {**gec("B-1"), "kind": "trade"})
    assert [c.id for c in store.list_certificates("a")] == ["A-jan", "A-mar"]
    assert [(c.id, c.kind) for c in store.list_certificates("b")] == [("B-1", "trade")]
    assert store.list_certificates("nobody") == []
    with pytest.raises(NotFoundError):
        store.get_certificate("B-1", park="a")


def test_duplicate_id_refused_in_any_park(store: LedgerStore) -> None:
    store.add_certificate("a", gec("DUP", 5))
    head = store.audit_head()
    with pytest.raises(DuplicateIdError, match="DUP"):
        store.add_certificate("a", gec("DUP", 5))
    # Same MWh claimed by another park: refused too.
    with pytest.raises(DuplicateIdError) as info:
        store.add_certificate("b", gec("DUP", 7))
    assert info.value.park == "a"
    assert store.list_certificates("b") == []
    assert store.get_certificate("DUP").mwh == 5
    # A refused add leaves no audit entry behind.
    assert store.audit_head() == head


def test_revoked_id_stays_taken(store: LedgerStore) -> None:
    store.add_certificate("a", gec("R1"))
    store.revoke_certificate("R1")
    with pytest.raises(DuplicateIdError):
        store.add_certificate("a", gec("R1"))


def test_revoke_certificate(store: LedgerStore) -> None:
    store.add_certificate("a", gec("C1", 3))
    store.add_certificate("a", gec("C2", 4, month=2))
    rec = store.revoke_certificate("C1", actor="kmgr", reason="entered twice")
    assert rec.revoked and rec.revoked_by == "kmgr" and rec.revoke_reason == "entered twice"
    assert [c.id for c in store.list_certificates("a")] == ["C2"]
    assert [c.id for c in store.certificates_for("a")] == ["C2"]
    assert [(c.id, c.revoked) for c in store.list_certificates("a", include_revoked=True)] == [
        ("C1", True),
        ("C2", False),
    ]
    with pytest.raises(AlreadyRevokedError):
        store.revoke_certificate("C1")
    with pytest.raises(NotFoundError):
        store.revoke_certificate("nope")
    with pytest.raises(NotFoundError):
        store.revoke_certificate("C2", park="b")
    actions = [(e.action, e.actor, e.object) for e in store.list_audit()]
    assert actions == [
        ("certificate.add", "system", "park/a/certificate/C1"),
        ("certificate.add", "system", "park/a/certificate/C2"),
        ("certificate.revoke", "kmgr", "park/a/certificate/C1"),
    ]
    details = dict(store.list_audit()[2].details)
    assert details.pop("row")["table"] == "ledger_certificates"
    assert details == {"park": "a", "id": "C1", "reason": "entered twice"}


def test_naive_datetime_refused(store: LedgerStore) -> None:
    with pytest.raises(ValidationError, match="timezone"):
        store.add_certificate("a", gec("N1", valid_from="2025-01-01T00:00:00"))
    assert store.list_certificates("a") == []
    assert store.list_audit() == []


def test_bad_park_id_refused(store: LedgerStore) -> None:
    with pytest.raises(ValueError, match="park"):
        store.add_certificate("bad park", gec("P1"))


def test_offsets(store: LedgerStore) -> None:
    store.add_offset(
        "a", {"id": "CCER-2", "kind": "ccer", "tco2": 2.5, "date": "2025-07-01"}, actor="k1"
    )
    store.add_offset(
        "a", {"id": "SINK-1", "kind": "sink", "tco2": 1.25, "date": "2025-03-15", "source": "x"}
    )
    store.add_offset("b", {"id": "CCER-3", "kind": "ccer", "tco2": 9, "date": "2025-01-01"})
    assert [o.id for o in store.list_offsets("a")] == ["SINK-1", "CCER-2"]
    assert store.offsets_for("b") == [
        Offset(id="CCER-3", park="b", kind="ccer", tco2=9.0, date=date(2025, 1, 1), source="")
    ]
    with pytest.raises(DuplicateIdError):
        store.add_offset("b", {"id": "CCER-2", "kind": "ccer", "tco2": 1, "date": "2025-01-01"})
    store.revoke_offset("SINK-1", actor="k2", reason="retired elsewhere")
    assert [o.id for o in store.offsets_for("a")] == ["CCER-2"]
    assert store.get_offset("SINK-1").revoked_by == "k2"
    with pytest.raises(AlreadyRevokedError):
        store.revoke_offset("SINK-1")
    assert [e.action for e in store.list_audit()] == [
        "offset.add",
        "offset.add",
        "offset.add",
        "offset.revoke",
    ]


def test_data_survives_reopen(sql_url: str) -> None:
    with LedgerStore(sql_url) as s1:
        s1.add_certificate("a", gec("KEEP", 1.5))
    with LedgerStore(sql_url) as s2:  # create_all again is a no-op
        assert s2.get_certificate("KEEP").mwh == 1.5
        assert s2.verify_audit() == []


def test_documents_are_versioned_and_audited(store: LedgerStore) -> None:
    v1 = store.put_factor_set("cn-2023", {"grid": {"northeast": 0.5122}}, actor="kadmin")
    v2 = store.put_factor_set(
        "cn-2023", {"grid": {"northeast": 0.52}}, actor="kadmin", expected_version=1
    )
    assert (v1.version, v2.version) == (1, 2)
    latest = store.get_factor_set("cn-2023")
    assert latest is not None and latest.body == {"grid": {"northeast": 0.52}}
    first = store.get_factor_set("cn-2023", version=1)
    assert first is not None and first.body == {"grid": {"northeast": 0.5122}}
    assert store.get_factor_set("cn-2099") is None
    with pytest.raises(VersionConflictError):
        store.put_factor_set("cn-2023", {"x": 1}, expected_version=1)

    reg = store.put_registry({"parks": [{"id": "p"}]}, expected_version=0, comment="first")
    assert reg.version == 1 and store.get_registry() == reg
    assert [d.version for d in store.list_document_versions("factor_set", "cn-2023")] == [1, 2]

    entries = store.list_audit()
    assert [e.action for e in entries] == ["factor_set.put", "factor_set.put", "registry.put"]
    # The audit entry pins the exact body: sha256 of its canonical JSON, computed here by hand.
    expected = hashlib.sha256(b'{"grid":{"northeast":0.52}}').hexdigest()
    assert entries[1].details["body_sha256"] == expected
    assert entries[1].details["version"] == 2


def _open_and_bootstrap(url_at: tuple[str, float]) -> str:
    import time

    from app.ledgers import LedgerStore

    url, at = url_at
    time.sleep(max(0.0, at - time.time()))  # every process opens at the same instant
    store = LedgerStore(url)
    try:
        return store.bootstrap_admin("race-admin-key-0123456789abcdef").id
    finally:
        store.close()


def test_processes_opening_a_new_sqlite_ledger_together_all_start(tmp_path: Path) -> None:
    """Two API replicas starting at the same moment on a new SQLite file: before the fix one
    of them died with "database is locked" (WAL switch, then the schema's lock upgrade)."""
    import multiprocessing as mp
    import time

    with mp.get_context("spawn").Pool(4) as pool:
        for k in range(4):
            url = f"sqlite:///{tmp_path}/ledger-{k}.db"
            at = time.time() + (4.0 if k == 0 else 0.5)  # the first round waits for imports
            ids = pool.map(_open_and_bootstrap, [(url, at)] * 4, chunksize=1)
            assert len(set(ids)) == 1  # one bootstrap key, whoever created it
