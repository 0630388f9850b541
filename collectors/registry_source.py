"""The registry a lone collector runs on: the file, superseded by edits stored in the ledger
store (`LINGTAN_DB_URL`, shared with `lingtan api`), and the watch that follows those edits.

The ledger store (SQLAlchemy, Alembic: ~0.5 s of imports) is opened at start only when it has
to decide something (no database yet, a migration, a changed file to import); otherwise the
version in force is read with sqlite3, polled with sqlite3 too, and the store opens in the
background only once a poll sees a change (docs/performance.md, "Collector start-up").
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

from app.config import Settings
from app.registry import load_registry
from app.registry.holder import RegistryHolder
from app.registry.stored import read_in_force, version_in_force

if TYPE_CHECKING:
    from app.ledgers import LedgerStore
    from app.ledgers.registry_store import RegistryWatcher

log = logging.getLogger(__name__)


class RegistryWatch:
    """Keeps `holder` on the newest stored version; run `run()` as a task, `close()` at the end.

    Given no watcher, it polls the version in force with sqlite3 and opens the ledger store
    itself once that changed, in a thread (its imports would otherwise hold the event loop)."""

    def __init__(
        self,
        settings: Settings,
        holder: RegistryHolder,
        ledgers: LedgerStore | None = None,
        watcher: RegistryWatcher | None = None,
    ) -> None:
        self.settings = settings
        self.holder = holder
        self._ledgers = ledgers
        self._watcher = watcher
        self._lock = threading.Lock()
        self._closed = False

    async def run(self) -> None:
        if self._watcher is None:
            # polled with sqlite3 until something changed: a collector whose registry is
            # not edited never loads SQLAlchemy (~0.5 s of CPU taken from ingest)
            while True:
                await asyncio.sleep(self.settings.registry_poll_s)
                settings = self.settings
                version = await asyncio.to_thread(
                    version_in_force, settings.ledger_url, settings.parks
                )
                if version != self.holder.version:
                    break
            self._watcher = await asyncio.to_thread(self._open)
            if self._watcher is None:
                return
            await self._watcher.check()
        await self._watcher.run()

    def _open(self) -> RegistryWatcher | None:
        from sqlalchemy.exc import SQLAlchemyError

        from app.ledgers.registry_store import RegistryStore, RegistryWatcher

        try:
            ledgers = _ledger_store(self.settings)
        except SQLAlchemyError as exc:
            _unreachable(self.settings, exc, f"keeping registry version {self.holder.version}")
            return None
        with self._lock:
            if self._closed:  # stopped while this thread was opening it
                ledgers.close()
                return None
            self._ledgers = ledgers
        store = RegistryStore(ledgers, self.settings.parks)
        return RegistryWatcher(store, self.holder, self.settings.registry_poll_s)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._ledgers is not None:
                self._ledgers.close()
                self._ledgers = None


def own_registry(settings: Settings) -> tuple[RegistryHolder, RegistryWatch | None]:
    """The registry in force and the watch that keeps it so; no watch when the ledger store is
    unreachable. Ingest must not depend on that database: unreachable, the file alone is used."""
    stored = read_in_force(settings.ledger_url, settings.parks)
    if stored is not None:
        holder = RegistryHolder(stored.registry, stored.version, stored.file_sha256)
        return holder, RegistryWatch(settings, holder)
    from sqlalchemy.exc import SQLAlchemyError

    from app.ledgers.registry_store import open_registry

    try:
        ledgers = _ledger_store(settings)
    except SQLAlchemyError as exc:
        _unreachable(settings, exc, "using the registry file")
        return RegistryHolder(load_registry(settings.parks)), None
    try:
        holder, watcher = open_registry(ledgers, settings.parks, settings.registry_poll_s)
    except BaseException:
        ledgers.close()
        raise
    return holder, RegistryWatch(settings, holder, ledgers, watcher)


def _ledger_store(settings: Settings) -> LedgerStore:
    from app.ledgers import LedgerStore

    return LedgerStore(settings.ledger_url)


def _unreachable(settings: Settings, exc: Exception, using: str) -> None:
    from sqlalchemy.engine import make_url

    log.warning(
        "ledger store %s unreachable (%s): %s; registry edits made through the API need a"
        " restart of the collector",
        make_url(settings.ledger_url).render_as_string(hide_password=True),
        exc,
        using,
    )
