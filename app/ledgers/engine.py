"""Engine setup per backend: SQLite locking/WAL, PostgreSQL schema lock, migrations on open,
append-only triggers."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from app.ledgers.orm import (
    ApiKeyRow,
    AuditRow,
    Base,
    CertificateRow,
    CorrectionRow,
    DocumentRow,
    OffsetRow,
)

#: Execution option marking the engine whose transactions write (and so must serialise).
WRITE_OPTION = "lingtan_write"

#: The Alembic scripts of the ledger database.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: The revision whose schema the release before migrations created with `create_all`.
RELEASE_BEFORE_MIGRATIONS = "0001"

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
)

_PG_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
)


#: Columns a revocation may set on each revocable ledger table; every other column is immutable.
_REVOCATION: dict[str, tuple[str, ...]] = {
    CertificateRow.__tablename__: ("revoked_at", "revoked_by", "revoke_reason"),
    OffsetRow.__tablename__: ("revoked_at", "revoked_by", "revoke_reason"),
    CorrectionRow.__tablename__: ("revoked_at", "revoked_by", "revoke_reason"),
    ApiKeyRow.__tablename__: ("revoked_at", "revoked_by"),
}
#: The bootstrap admin key's row is re-keyed in place when LINGTAN_BOOTSTRAP_ADMIN_KEY changes.
_BOOTSTRAP_MUTABLE = ("key_hash", "role", "revoked_at", "revoked_by")
#: Tables nothing may UPDATE at all (new versions are new rows).
_INSERT_ONLY = (DocumentRow.__tablename__,)


def _columns(table: str) -> list[str]:
    return [c.name for c in Base.metadata.tables[table].columns]


def _same(cols: list[str], eq: str) -> str:
    return " AND ".join(f'NEW."{c}" {eq} OLD."{c}"' for c in cols)


def _allowed_update(table: str, eq: str) -> str:
    """SQL condition (over OLD/NEW) of the updates the store itself makes: a revocation
    (revocation columns from unrevoked to revoked, nothing else) and, on api_keys, the
    bootstrap key's rotation."""
    mutable = _REVOCATION[table]
    cond = (
        f"(OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL AND "
        f"{_same([c for c in _columns(table) if c not in mutable], eq)})"
    )
    if table == ApiKeyRow.__tablename__:
        fixed = [c for c in _columns(table) if c not in _BOOTSTRAP_MUTABLE]
        cond += (
            f" OR (OLD.id = 'bootstrap' AND NEW.role = 'admin' AND NEW.revoked_at IS NULL "
            f"AND {_same(fixed, eq)})"
        )
    return cond


def _sqlite_ledger_triggers() -> list[str]:
    out = []
    for table in [*_REVOCATION, *_INSERT_ONLY]:
        raise_ = f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        when = f" WHEN NOT ({_allowed_update(table, 'IS')})" if table in _REVOCATION else ""
        out.append(
            f"CREATE TRIGGER IF NOT EXISTS {table}_append_only BEFORE UPDATE ON {table}"
            f"{when} {raise_}"
        )
        out.append(
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} {raise_}"
        )
    return out


def _pg_ledger_triggers() -> list[str]:
    out = []
    for table in [*_REVOCATION, *_INSERT_ONLY]:
        check = (
            f"IF TG_OP = 'UPDATE' THEN IF ({_allowed_update(table, 'IS NOT DISTINCT FROM')}) "
            "THEN RETURN NEW; END IF; END IF; "
            if table in _REVOCATION
            else ""
        )
        out += [
            f"CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {check}"
            f"RAISE EXCEPTION '{table} is append-only'; END $$",
            f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()",
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()",
        ]
    return out


def make_engines(url: str, *, echo: bool = False) -> tuple[Engine, Engine]:
    """Return (read engine, write engine) sharing one pool.

    SQLite: pysqlite's own transaction handling is switched off so we emit BEGIN ourselves;
    write transactions use BEGIN IMMEDIATE, which takes the database write lock before the
    audit tail is read, so two writers (threads or processes) queue instead of forking the
    chain or failing with SQLITE_BUSY on lock upgrade. WAL lets readers run meanwhile.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        kwargs["connect_args"] = {"timeout": 30.0, "check_same_thread": False}
        if memory:
            # One shared connection, or every checkout would see a new empty database.
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine, wal=not memory)
    else:
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
    return engine, engine.execution_options(**{WRITE_OPTION: True})


def _switch_to_wal(cursor: Any, attempts: int = 300) -> None:
    """WAL mode, once per database file. SQLite answers "database is locked" at once, without
    its busy timeout, when two processes open a new file together and both switch it (seen
    with two `lingtan api` replicas starting at the same moment): retry for up to ~30 s."""
    for attempt in range(attempts):
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see make_engines)
        cursor = dbapi_conn.cursor()
        if wal:
            _switch_to_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def create_schema(engine: Engine) -> None:
    """Upgrade the database to the newest migration (app/ledgers/migrations), idempotent.

    A database of the release before migrations (tables but no alembic_version) is stamped
    with revision 0001, its schema, first. Then the append-only triggers: ledger tables refuse
    DELETE (and TRUNCATE) and every UPDATE but the store's own: revocation, and the bootstrap
    key's rotation (docs/security.md)."""
    # the write engine: on SQLite BEGIN IMMEDIATE, so two processes opening a new file queue
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes starting together must not race on CREATE TABLE / FUNCTION.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('lingtan_ledger_schema'))"))
        upgrade_to_head(conn)
        # re-asserted at every open, as before migrations (idempotent): a dropped trigger
        # comes back; they follow the ORM's columns, so no migration has to restate them
        if conn.dialect.name == "postgresql":
            for stmt in (*_PG_TRIGGERS, *_pg_ledger_triggers()):
                conn.exec_driver_sql(stmt)
        elif conn.dialect.name == "sqlite":
            for stmt in (*_SQLITE_TRIGGERS, *_sqlite_ledger_triggers()):
                conn.exec_driver_sql(stmt)


def upgrade_to_head(conn: Connection) -> None:
    """Run the migrations not yet applied, in the caller's transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables and AuditRow.__tablename__ in tables:
        command.stamp(config, RELEASE_BEFORE_MIGRATIONS)
    command.upgrade(config, "head")


def lock_for_write(conn: Connection) -> None:
    """Serialise writers on backends where BEGIN alone does not (PostgreSQL).

    EXCLUSIVE mode blocks other writers of audit_log (every write transaction takes it
    first, before touching anything else, so there is no lock-order deadlock) while plain
    readers carry on.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE audit_log IN EXCLUSIVE MODE")
