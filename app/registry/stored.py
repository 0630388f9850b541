"""The stored registry version in force, read straight from a SQLite ledger database (stdlib
sqlite3) so a collector can start without the ledger store's SQLAlchemy and Alembic."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.registry.models import Registry

#: The ledger database's newest Alembic revision: a database at another one is left to the
#: ledger store, which migrates it (tests/test_registry_stored.py keeps this equal to the
#: head of app/ledgers/migrations).
LEDGER_SCHEMA_HEAD = "0002"
#: Where the ledger store keeps registry versions (app/ledgers/documents.py, same test).
REGISTRY_KIND = "registry"
REGISTRY_DOC_NAME = "parks"

_LATEST = (
    "SELECT version, body FROM documents WHERE kind = ? AND name = ? ORDER BY version DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """The registry a process starts on, as `RegistryStore.startup` would give it."""

    registry: Registry
    version: int
    file_sha256: str | None


def sqlite_path(url: str) -> Path | None:
    """The database file of a plain `sqlite:///<path>` URL; None for anything else
    (another backend, a driver, options, an in-memory database)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = url[len(prefix) :]
    return Path(path) if path and path != ":memory:" else None


def _file_sha256(path: Path | None) -> str | None:
    """The registry file's digest; None when there is none (OSError when unreadable)."""
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _latest(db: Path, query: str) -> tuple[Any, ...] | None:
    """`query`'s row for the newest registry version; None at another schema revision."""
    uri = db.absolute().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as conn:
        heads = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        if heads != [(LEDGER_SCHEMA_HEAD,)]:
            return None
        row: tuple[Any, ...] | None = conn.execute(
            query, (REGISTRY_KIND, REGISTRY_DOC_NAME)
        ).fetchone()
    return row


def _latest_row(db: Path) -> tuple[int, str] | None:
    row = _latest(db, _LATEST)
    return None if row is None else (int(row[0]), str(row[1]))


def read_in_force(db_url: str, registry_file: Path | None) -> StoredVersion | None:
    """The newest stored version when it is the one in force: the registry file is missing or
    is the one that version descends from. None whenever the ledger store itself must open
    (no such database yet, another schema revision or backend, a changed file to import, any
    error), so this never decides differently from it (docs/performance.md, "Collector
    start-up")."""
    db = sqlite_path(db_url)
    if db is None or not db.is_file():
        return None
    try:
        file_sha = _file_sha256(registry_file)
        row = _latest_row(db)
        if row is None:
            return None
        body = json.loads(row[1])
        stored_sha = body.get("file_sha256")
        if file_sha is not None and stored_sha != file_sha:
            return None
        registry = Registry.model_validate({"parks": body.get("parks", [])})
    except (OSError, sqlite3.Error, ValueError, AttributeError):  # ValidationError is a ValueError
        return None
    return StoredVersion(registry, row[0], stored_sha if isinstance(stored_sha, str) else None)


_LATEST_VERSION = (
    "SELECT version, json_extract(body, '$.file_sha256') FROM documents"
    " WHERE kind = ? AND name = ? ORDER BY version DESC LIMIT 1"
)


def version_in_force(db_url: str, registry_file: Path | None) -> int | None:
    """`read_in_force(...).version` without reading the registry itself: what a collector
    polls to learn that nothing changed (None: something may have, let the ledger store
    decide)."""
    db = sqlite_path(db_url)
    if db is None or not db.is_file():
        return None
    try:
        file_sha = _file_sha256(registry_file)
        row = _latest(db, _LATEST_VERSION)
    except (OSError, sqlite3.Error):
        return None
    if row is None or (file_sha is not None and row[1] != file_sha):
        return None
    return int(row[0])
