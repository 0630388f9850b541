"""Alembic migrations of the ledger database: a database the previous release created (its own
code, commit 48a8756, writing rows and audit entries) upgrades on SQLite and PostgreSQL with
every row and the audit chain kept; a new database matches the ORM exactly."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, select, text
from sqlalchemy.exc import DBAPIError

import app.alarms.orm  # noqa: F401  (its tables are on the ledger metadata)
from app.ledgers import LedgerStore
from app.ledgers.orm import Base

ROOT = Path(__file__).resolve().parent.parent
WRITER = ROOT / "tests" / "fixtures" / "ledger_release_writer.py"
#: The last commit whose store made its schema with `create_all`, without migrations.
RELEASE = "48a8756"
OLD_TABLES = (
    "api_keys",
    "audit_log",
    "documents",
    "ledger_certificates",
    "ledger_corrections",
    "ledger_offsets",
)


@pytest.fixture(scope="session")
def release_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's `app` package, from git, in a tmp dir."""
    dest = tmp_path_factory.mktemp("release")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", RELEASE, "app"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _write_with_release(url: str, release: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(release)}
    # -P: the writer's own folder (tests/fixtures) stays off the path
    done = subprocess.run(
        [sys.executable, "-P", str(WRITER), url, str(release)],
        env=env,
        cwd=release,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    written: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return written


def _snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the previous release's tables, in primary-key order, as the driver reads
    them (no ORM type on the way)."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine, only=OLD_TABLES)
        with engine.connect() as conn:
            return {
                name: [
                    dict(row._mapping)
                    for row in conn.execute(select(table).order_by(*table.primary_key.columns))
                ]
                for name, table in meta.tables.items()
            }
    finally:
        engine.dispose()


def test_previous_release_database_upgrades_keeping_rows_and_audit_chain(
    sql_url: str, release_app: Path
) -> None:
    written = _write_with_release(sql_url, release_app)
    before = _snapshot(sql_url)
    # what the writer did: 2 keys (1 revoked), 2 certificates (1 revoked), 1 offset,
    # 2 corrections (1 revoked), a factor set, a registry and a record_audit: one audit
    # entry for each of those 13 calls
    assert {t: len(rows) for t, rows in before.items()} == {
        "api_keys": 2,
        "audit_log": 13,
        "documents": 2,
        "ledger_certificates": 2,
        "ledger_corrections": 2,
        "ledger_offsets": 1,
    }
    assert "parks" not in before["api_keys"][0]

    with LedgerStore(sql_url) as store:
        after = _snapshot(sql_url)
        assert after["api_keys"] == [{**row, "parks": None} for row in before["api_keys"]]
        for table in OLD_TABLES[1:]:
            assert after[table] == before[table], table
        assert store.audit_head() == (13, written["head"][1])

        # the chain verifies; the previous release recorded no row hashes, so each row is
        # unaudited until the documented one-time adoption (docs/security.md)
        problems = store.verify_audit()
        assert {(p.kind, p.table, p.row) for p in problems} == {
            ("row_unaudited", "api_keys", written["keys"][0]),
            ("row_unaudited", "api_keys", written["keys"][1]),
            ("row_unaudited", "ledger_certificates", "cert-1"),
            ("row_unaudited", "ledger_certificates", "cert-2"),
            ("row_unaudited", "ledger_offsets", "off-1"),
            ("row_unaudited", "ledger_corrections", "corr-1"),
            ("row_unaudited", "ledger_corrections", "corr-2"),
            ("row_unaudited", "documents", "factor_set/cn-2023/1"),
            ("row_unaudited", "documents", "registry/parks/1"),
        }
        assert len(store.adopt_unaudited_rows("cli:root", "baseline after upgrade")) == 9
        assert store.verify_audit() == []

        # the upgraded schema works: a park-scoped key (new column), still a clean chain
        scoped = store.create_key("viewer", "park a", "cli:root", parks=["park-a"])
        assert store.get_key(scoped.id).parks == ["park-a"]
        assert store.verify_audit() == []
        assert store.audit_head()[0] == 13 + 9 + 1

    engine = create_engine(sql_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                ("0002",)
            ]
        # the previous release guarded only the audit log; now a ledger row cannot be deleted
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("DELETE FROM ledger_certificates WHERE id = 'cert-1'"))
    finally:
        engine.dispose()

    # opening again is a no-op: nothing to migrate, nothing lost
    with LedgerStore(sql_url) as store:
        assert store.audit_head()[0] == 23
        assert store.verify_audit() == []


def test_new_database_matches_the_orm(sql_url: str) -> None:
    LedgerStore(sql_url).close()
    engine = create_engine(sql_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            tables = set(Base.metadata.tables)
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    assert diff == []
    assert version == "0002"
    assert {"alarms", "alarm_notifications", "alarm_leases", *OLD_TABLES} <= tables
