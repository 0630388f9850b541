"""Tamper-evident audit chain: clean verification, detected edits/deletions, no forks."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.ledgers import GENESIS_HASH, LedgerStore


@pytest.fixture
def store(sql_url: str) -> Iterator[LedgerStore]:
    s = LedgerStore(sql_url)
    yield s
    s.close()


def raw(sql_url: str, *statements: str, params: dict[str, object] | None = None) -> None:
    engine = create_engine(sql_url)
    try:
        with engine.begin() as conn:
            for stmt in statements:
                conn.execute(text(stmt), params or {})
    finally:
        engine.dispose()


def unlock_audit(sql_url: str) -> None:
    """What an attacker with DDL rights does first: remove the append-only triggers."""
    if sql_url.startswith("sqlite"):
        raw(sql_url, "DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete")
    else:
        raw(sql_url, "ALTER TABLE audit_log DISABLE TRIGGER USER")


def five_entries(store: LedgerStore) -> None:
    for i in range(1, 6):
        store.add_offset(
            "p", {"id": f"O{i}", "kind": "ccer", "tco2": i, "date": f"2025-01-0{i}"}, actor="k1"
        )


def test_clean_chain_links_and_hashes(store: LedgerStore) -> None:
    five_entries(store)
    entries = store.list_audit()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    # The documented hash, computed independently: sha256(canonical JSON + prev_hash).
    e = entries[0]
    # ... and the row's content hash it records: every column of the row as stored
    stored = store.get_offset("O1")
    row = {
        "created_at": stored.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "created_by": "k1",
        "date": "2025-01-01",
        "id": "O1",
        "kind": "ccer",
        "park": "p",
        "revoke_reason": None,
        "revoked_at": None,
        "revoked_by": None,
        "source": "",
        "tco2": 1.0,
    }
    row_sha = hashlib.sha256(
        json.dumps(
            {"table": "ledger_offsets", "row": row}, sort_keys=True, separators=(",", ":")
        ).encode()
    ).hexdigest()
    body = json.dumps(
        {
            "action": "offset.add",
            "actor": "k1",
            "details": {
                "date": "2025-01-01",
                "id": "O1",
                "kind": "ccer",
                "park": "p",
                "source": "",
                "tco2": 1.0,
                "row": {"table": "ledger_offsets", "id": "O1", "sha256": row_sha},
            },
            "object": "park/p/offset/O1",
            "seq": 1,
            "ts": e.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert e.hash == hashlib.sha256((body + "0" * 64).encode()).hexdigest()
    assert store.verify_audit() == []
    assert store.audit_head() == (5, entries[-1].hash)
    assert [x.seq for x in store.list_audit(after_seq=2, limit=2)] == [3, 4]


def test_append_only_enforced_by_database(store: LedgerStore, sql_url: str) -> None:
    five_entries(store)
    with pytest.raises(DBAPIError, match="append-only"):
        raw(sql_url, "UPDATE audit_log SET actor = 'x' WHERE seq = 2")
    with pytest.raises(DBAPIError, match="append-only"):
        raw(sql_url, "DELETE FROM audit_log WHERE seq = 2")
    assert store.verify_audit() == []


def test_edited_details_detected(store: LedgerStore, sql_url: str) -> None:
    five_entries(store)
    unlock_audit(sql_url)
    raw(sql_url, "UPDATE audit_log SET details = replace(details, '3.0', '30.0') WHERE seq = 3")
    problems = store.verify_audit()
    assert [(p.seq, p.kind) for p in problems] == [(3, "edited")]
    assert "seq 3" in problems[0].message


def test_edited_and_rehashed_entry_breaks_link(store: LedgerStore, sql_url: str) -> None:
    five_entries(store)
    entries = store.list_audit()
    unlock_audit(sql_url)
    # Forge entry 2 with a self-consistent hash: its successor no longer links to it.
    e = entries[1]
    forged = {**e.details, "tco2": 200.0}
    body = json.dumps(
        {
            "seq": 2,
            "ts": e.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor": e.actor,
            "action": e.action,
            "object": e.object,
            "details": forged,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    new_hash = hashlib.sha256((body + e.prev_hash).encode()).hexdigest()
    details = json.dumps(forged, sort_keys=True, separators=(",", ":"))
    raw(
        sql_url,
        "UPDATE audit_log SET details = :details, hash = :hash WHERE seq = 2",
        params={"details": details, "hash": new_hash},
    )
    problems = store.verify_audit()
    assert [(p.seq, p.kind) for p in problems] == [(3, "chain_broken")]
    assert "entry 2 was rewritten" in problems[0].message


def test_deleted_middle_entry_detected(store: LedgerStore, sql_url: str) -> None:
    five_entries(store)
    unlock_audit(sql_url)
    raw(sql_url, "DELETE FROM audit_log WHERE seq = 3")
    problems = store.verify_audit()
    # the gap, and the offset row whose audit entry went with it
    assert [(p.seq, p.kind, p.table, p.row) for p in problems] == [
        (3, "missing", None, None),
        (0, "row_unaudited", "ledger_offsets", "O3"),
    ]
    assert "seq 3 missing" in problems[0].message


def test_deleted_first_entries_detected(store: LedgerStore, sql_url: str) -> None:
    five_entries(store)
    unlock_audit(sql_url)
    raw(sql_url, "DELETE FROM audit_log WHERE seq IN (1, 2)")
    problems = store.verify_audit()
    assert [(p.seq, p.kind, p.row) for p in problems] == [
        (1, "missing", None),
        (0, "row_unaudited", "O1"),
        (0, "row_unaudited", "O2"),
    ]
    assert "seq 1..2 missing" in problems[0].message


def test_truncated_tail_needs_anchor(store: LedgerStore, sql_url: str) -> None:
    five_entries(store)
    anchor = store.audit_head()
    unlock_audit(sql_url)
    raw(sql_url, "DELETE FROM audit_log WHERE seq >= 4")
    # The remaining chain is self-consistent; the rows those entries recorded reveal the
    # loss, and so does the recorded head.
    assert [(p.kind, p.row) for p in store.verify_audit()] == [
        ("row_unaudited", "O4"),
        ("row_unaudited", "O5"),
    ]
    problems = store.verify_audit(anchor=anchor)
    assert [(p.seq, p.kind) for p in problems if p.table is None] == [(5, "head_mismatch")]


def test_fork_refused_structurally(store: LedgerStore, sql_url: str) -> None:
    five_entries(store)
    first = store.list_audit()[0]
    with pytest.raises(IntegrityError):
        raw(
            sql_url,
            "INSERT INTO audit_log (seq, ts, actor, action, object, details, prev_hash, hash) "
            f"VALUES (99, '2025-01-01 00:00:00', 'x', 'x', 'x', '{{}}', '{first.prev_hash}', "
            f"'{'f' * 64}')",
        )


def test_concurrent_writers_do_not_fork(sql_url: str) -> None:
    # Two stores = two engines/pools, as two processes would have; two threads each.
    stores = [LedgerStore(sql_url), LedgerStore(sql_url)]
    errors: list[BaseException] = []

    def writer(s: LedgerStore, name: str) -> None:
        try:
            for i in range(10):
                s.add_offset(
                    "p", {"id": f"{name}-{i}", "kind": "ccer", "tco2": 1, "date": "2025-01-01"}
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(stores[n % 2], f"w{n}")) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert errors == []
        entries = stores[0].list_audit()
        assert [e.seq for e in entries] == list(range(1, 41))
        assert stores[1].verify_audit() == []
        assert len(stores[0].list_offsets("p")) == 40
    finally:
        for s in stores:
            s.close()
