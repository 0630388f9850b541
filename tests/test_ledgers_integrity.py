"""Every ledger table under the audit chain: the database refuses edits (triggers), and an
edit made anyway (triggers dropped, as an attacker with DDL rights would) is found by
`lingtan audit verify`, naming the table and the row; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from app.ledgers import LedgerStore
from lingtan.cli import main

TABLES = (
    "ledger_certificates",
    "ledger_offsets",
    "ledger_corrections",
    "api_keys",
    "documents",
)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("LINGTAN_DB_URL", "LINGTAN_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def raw(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for stmt in statements:
                conn.exec_driver_sql(stmt)
    finally:
        engine.dispose()


def drop_guards(url: str, table: str) -> None:
    """What an attacker with DDL rights does first: remove the table's append-only trigger."""
    if url.startswith("sqlite"):
        raw(url, f"DROP TRIGGER {table}_append_only", f"DROP TRIGGER {table}_no_delete")
    else:
        raw(url, f"DROP TRIGGER {table}_append_only ON {table}")


@pytest.fixture
def populated(sql_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """One row of every ledger table (and one revocation, which the triggers allow)."""
    with LedgerStore(sql_url) as store:
        store.add_certificate(
            "a",
            {
                "id": "C1",
                "kind": "gec",
                "mwh": 50,
                "valid_from": "2025-01-01T00:00:00+08:00",
                "valid_to": "2025-02-01T00:00:00+08:00",
            },
            actor="kmgr",
        )
        store.add_certificate(
            "a",
            {
                "id": "C2",
                "kind": "trade",
                "mwh": 7,
                "valid_from": "2025-01-01T00:00:00Z",
                "valid_to": "2025-01-02T00:00:00Z",
            },
        )
        store.revoke_certificate("C2", actor="kmgr", reason="typo")
        store.add_offset("a", {"id": "O1", "kind": "ccer", "tco2": 12.5, "date": "2025-03-01"})
        store.add_correction(
            "a",
            {
                "id": "K1",
                "device": "grid-main",
                "quantity": "energy_kwh",
                "start": "2025-01-01T00:00:00Z",
                "end": "2025-01-01T01:00:00Z",
                "kind": "set",
                "amount": 100,
                "reason": "meter swap",
            },
        )
        viewer = store.create_key("viewer", "grafana", parks=["a"])
        store.bootstrap_admin("b" * 32)
        store.bootstrap_admin("c" * 32)  # rotation: an in-place update the triggers allow
        store.put_registry({"parks": [{"id": "a"}]}, comment="first")
        store.put_factor_set("cn-x", {"grid": {"ne": 0.5}})
        assert store.verify_audit() == []
    yield sql_url, {"viewer": viewer.id}


def verify(capsys: pytest.CaptureFixture[str], url: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["audit", "verify", "--db-url", url])
    out, _ = capsys.readouterr()
    return code, out


#: (table, tampering statement, row id the report must name); `{viewer}` is the viewer key id
EDITS = [
    ("ledger_certificates", "UPDATE ledger_certificates SET mwh = 5000 WHERE id = 'C1'", "C1"),
    ("ledger_certificates", "UPDATE ledger_certificates SET revoked_at = NULL, "
     "revoked_by = NULL WHERE id = 'C2'", "C2"),
    ("ledger_offsets", "UPDATE ledger_offsets SET tco2 = 1250 WHERE id = 'O1'", "O1"),
    ("ledger_corrections", "UPDATE ledger_corrections SET amount = 1 WHERE id = 'K1'", "K1"),
    ("api_keys", "UPDATE api_keys SET role = 'admin' WHERE id = '{viewer}'", "{viewer}"),
    ("api_keys", "UPDATE api_keys SET parks = NULL WHERE id = '{viewer}'", "{viewer}"),
    ("documents", "UPDATE documents SET body = '{{\"parks\":[]}}' WHERE kind = 'registry'",
     "registry/parks/1"),
    ("documents", "UPDATE documents SET body = '{{\"grid\":{{\"ne\":0.1}}}}' "
     "WHERE kind = 'factor_set'", "factor_set/cn-x/1"),
]  # fmt: skip


@pytest.mark.parametrize(("table", "sql", "row"), EDITS)
def test_an_edited_row_is_refused_then_found(
    populated: tuple[str, dict[str, str]],
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    table: str,
    sql: str,
    row: str,
) -> None:
    url, ids = populated
    sql, row = sql.format(**ids), row.format(**ids)
    with pytest.raises(DBAPIError, match="append-only"):
        raw(url, sql)
    assert verify(capsys, url)[0] == 0

    drop_guards(url, table)
    raw(url, sql)
    code, out = verify(capsys, url)
    assert code == 1
    assert out.splitlines() == [
        f"{table} row {row}: row_mismatch: {table} row {row!r} was edited: its content no "
        f"longer matches the hash recorded by audit seq {seq_of(url, table, row)}"
    ]


def seq_of(url: str, table: str, row: str) -> int:
    """The last audit entry about the row, found by its object name (not by the row hash)."""
    if table == "documents":
        kind, name, _ = row.split("/")
        obj = f"{kind}/{name}"
    elif table == "api_keys":
        obj = f"key/{row}"
    else:
        kind = {"ledger_certificates": "certificate", "ledger_offsets": "offset"}.get(
            table, "correction"
        )
        obj = f"park/a/{kind}/{row}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            seq = conn.execute(
                text("SELECT max(seq) FROM audit_log WHERE object = :o"), {"o": obj}
            ).scalar_one()
    finally:
        engine.dispose()
    return int(seq)


@pytest.mark.parametrize("table", TABLES)
def test_deleted_and_smuggled_rows_are_found(
    populated: tuple[str, dict[str, str]],
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    table: str,
) -> None:
    url, ids = populated
    first = {
        "ledger_certificates": "id = 'C1'",
        "ledger_offsets": "id = 'O1'",
        "ledger_corrections": "id = 'K1'",
        "api_keys": f"id = '{ids['viewer']}'",
        "documents": "kind = 'registry'",
    }[table]
    with pytest.raises(DBAPIError, match="append-only"):
        raw(url, f"DELETE FROM {table} WHERE {first}")
    drop_guards(url, table)
    raw(url, f"DELETE FROM {table} WHERE {first}")
    code, out = verify(capsys, url)
    assert code == 1
    assert len(out.splitlines()) == 1
    assert out.startswith(f"{table} row ") and ": row_deleted: " in out

    # a row inserted behind the application's back has no audit entry
    ts = datetime(2025, 1, 1, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")
    insert = {
        "ledger_certificates": "INSERT INTO ledger_certificates (id, park, kind, mwh, valid_from, "
        f"valid_to, source, created_at, created_by) VALUES ('X9', 'a', 'gec', 900, '{ts}', "
        f"'{ts}', '', '{ts}', 'x')",
        "ledger_offsets": "INSERT INTO ledger_offsets (id, park, kind, tco2, date, source, "
        f"created_at, created_by) VALUES ('X9', 'a', 'ccer', 9, '2025-01-01', '', '{ts}', 'x')",
        "ledger_corrections": "INSERT INTO ledger_corrections (id, seq, park, device, quantity, "
        "start, \"end\", kind, amount, reason, created_at, created_by) VALUES ('X9', 99, 'a', "
        f"'d', 'energy_kwh', '{ts}', '{ts}', 'add', 9, 'r', '{ts}', 'x')",
        "api_keys": "INSERT INTO api_keys (id, key_hash, role, label, created_at, created_by) "
        f"VALUES ('X9', '{'0' * 64}', 'admin', '', '{ts}', 'x')",
        "documents": "INSERT INTO documents (kind, name, version, body, created_at, created_by, "
        f"comment) VALUES ('registry', 'parks', 9, '{{}}', '{ts}', 'x', '')",
    }[table]
    raw(url, insert)
    code, out = verify(capsys, url)
    assert code == 1
    smuggled = "registry/parks/9" if table == "documents" else "X9"
    assert f"{table} row {smuggled}: row_unaudited: " in out


def test_the_store_s_own_changes_pass_the_triggers(sql_url: str) -> None:
    """Revocations (and the bootstrap rotation) are the only updates, and they verify."""
    with LedgerStore(sql_url) as store:
        store.add_offset("a", {"id": "O1", "kind": "ccer", "tco2": 1, "date": "2025-03-01"})
        store.revoke_offset("O1", reason="double")
        key = store.create_key("manager", parks=["a", "b"])
        store.revoke_key(key.id)
        assert store.get_key(key.id).parks == ["a", "b"]
        assert store.verify_audit() == []
        # a revoked row cannot be revived, even with the revocation columns only
        with pytest.raises(DBAPIError, match="append-only"):
            raw(sql_url, "UPDATE ledger_offsets SET revoked_at = NULL WHERE id = 'O1'")


def test_a_database_from_before_row_hashes_is_upgraded_then_adopted(
    sqlite_url: str, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An old database: api_keys without `parks`, rows whose entries carry no row hash."""
    with LedgerStore(sqlite_url) as store:
        store.add_offset("a", {"id": "O1", "kind": "ccer", "tco2": 1, "date": "2025-03-01"})
    legacy = (
        # a database from before migrations has no alembic_version (docs/ledgers.md)
        "DROP TABLE alembic_version",
        "DROP TRIGGER api_keys_append_only",
        "ALTER TABLE api_keys DROP COLUMN parks",
        "DROP TRIGGER audit_log_no_update",
        # the entry as the old store wrote it: no details.row (hash fixed below)
        "UPDATE audit_log SET details = json_remove(details, '$.row')",
        "INSERT INTO api_keys (id, key_hash, role, label, created_at, created_by) "
        f"VALUES ('kold', '{'1' * 64}', 'viewer', '', '2025-01-01 00:00:00', 'x')",
    )
    raw(sqlite_url, *legacy)
    with LedgerStore(sqlite_url) as store:  # reopening adds the column back
        store.create_key("viewer", parks=["a"])
        problems = [(p.kind, p.table, p.row) for p in store.verify_audit()]
    assert ("row_unaudited", "api_keys", "kold") in problems
    assert ("row_unaudited", "ledger_offsets", "O1") in problems

    assert main(["audit", "adopt", "--reason", "baseline", "--db-url", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["ledger_offsets/O1", "api_keys/kold"]
    with LedgerStore(sqlite_url) as store:
        # the offset entry itself was edited above, so the chain still says so; the rows pass
        assert {p.kind for p in store.verify_audit()} == {"edited"}
        last = store.list_audit()[-1]
        assert (last.action, last.object) == ("row.adopt", "api_keys/kold")
        assert last.actor.startswith("cli") and last.details["reason"] == "baseline"
