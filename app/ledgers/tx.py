"""Transactions of the ledger store: read sessions, serialised write sessions, input checks."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.ledgers.engine import lock_for_write
from app.registry.models import ID_PATTERN

#: The actor of changes the service makes by itself.
SYSTEM_ACTOR = "system"

_PARK_RE = re.compile(ID_PATTERN)


def now() -> datetime:
    return datetime.now(UTC)


def check_park(park: str) -> str:
    if not isinstance(park, str) or not _PARK_RE.fullmatch(park):
        raise ValueError(f"invalid park id {park!r}")
    return park


def check_actor(actor: str) -> str:
    if not isinstance(actor, str) or not 0 < len(actor) <= 128:
        raise ValueError("actor must be a non-empty string of at most 128 characters")
    return actor


class Transactions:
    """Sessions over the store's engines: `read()` for queries, `write()` for changes.

    A write takes the in-process lock, then the database's write lock (docs/ledgers.md,
    concurrency) before anything is read, so two writers never append after the same audit
    tail; it commits on leaving the block, or rolls everything back on an exception.
    """

    def __init__(self, engine: Engine, write_engine: Engine) -> None:
        self.read_sessions = sessionmaker(engine, expire_on_commit=False)
        self.write_sessions = sessionmaker(write_engine, expire_on_commit=False)
        # Also serialises writers within this process (cheap, and needed for in-memory SQLite).
        self.write_lock = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self.write_lock, self.write_sessions() as session, session.begin():
            lock_for_write(session.connection())
            yield session
