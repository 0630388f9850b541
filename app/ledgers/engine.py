"""Engine setup per backend: SQLite locking/WAL, PostgreSQL schema lock, append-only triggers."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from app.ledgers.orm import ApiKeyRow, Base, CertificateRow, CorrectionRow, DocumentRow, OffsetRow

#: Execution option marking the engine whose transactions write (and so must serialise).
WRITE_OPTION = "lingtan_write"

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


def _add_missing_columns(conn: Connection) -> None:
    """Columns added since a table was first created (`create_all` never alters a table):
    `api_keys.parks` (NULL = every park). Idempotent."""
    columns = {c["name"] for c in inspect(conn).get_columns(ApiKeyRow.__tablename__)}
    if "parks" not in columns:
        conn.exec_driver_sql(f"ALTER TABLE {ApiKeyRow.__tablename__} ADD COLUMN parks TEXT")


def create_schema(engine: Engine) -> None:
    """Create missing tables and the append-only triggers (idempotent).

    Ledger tables refuse DELETE (and TRUNCATE) and every UPDATE but the store's own:
    revocation, and the bootstrap key's rotation (docs/security.md)."""
    if engine.dialect.name == "sqlite":
        # BEGIN IMMEDIATE: a deferred transaction that reads the schema, then writes, fails at
        # once with "database is locked" when another process does the same (two replicas
        # starting together); an immediate one waits for the other's commit instead.
        engine = engine.execution_options(**{WRITE_OPTION: True})
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes starting together must not race on CREATE TABLE / FUNCTION.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('lingtan_ledger_schema'))"))
            Base.metadata.create_all(conn)
            _add_missing_columns(conn)
            for stmt in (*_PG_TRIGGERS, *_pg_ledger_triggers()):
                conn.exec_driver_sql(stmt)
        else:
            Base.metadata.create_all(conn)
            _add_missing_columns(conn)
            if conn.dialect.name == "sqlite":
                for stmt in (*_SQLITE_TRIGGERS, *_sqlite_ledger_triggers()):
                    conn.exec_driver_sql(stmt)


def lock_for_write(conn: Connection) -> None:
    """Serialise writers on backends where BEGIN alone does not (PostgreSQL).

    EXCLUSIVE mode blocks other writers of audit_log (every write transaction takes it
    first, before touching anything else, so there is no lock-order deadlock) while plain
    readers carry on.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE audit_log IN EXCLUSIVE MODE")
