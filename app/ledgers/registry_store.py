"""The registry in force: the YAML file, superseded by edits stored (versioned, audited) in the
ledger store, and the poll that keeps a process's `RegistryHolder` on the newest version.

Rule: the newest stored version wins. The file is imported as a new version when it is first
seen and whenever its content changes (actor `registry-file`), so an edit of the file and an
edit through the API are both versioned and audited, and the later of the two is in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from app.ledgers import DocumentVersion, LedgerStore, VersionConflictError
from app.registry.diff import RegistryDiff, diff_registries
from app.registry.holder import RegistryHolder
from app.registry.loader import RegistryError, parse_registry
from app.registry.models import Registry

log = logging.getLogger(__name__)

#: Audit actor of versions imported from the registry file.
FILE_ACTOR = "registry-file"


@dataclass(frozen=True, slots=True)
class StoredRegistry:
    """One stored version of the registry and who made it."""

    registry: Registry
    version: int
    file_sha256: str | None
    updated_at: datetime | None = None
    updated_by: str | None = None
    comment: str = ""

    @property
    def source(self) -> str:
        return "file" if self.updated_by == FILE_ACTOR else "api"


def registry_body(registry: Registry, file_sha256: str | None) -> dict[str, Any]:
    """The stored document: the registry as the file would hold it, plus the digest of the
    file it descends from (so a poll can tell whether the file changed since)."""
    parks = registry.model_dump(mode="json", exclude_none=True)["parks"]
    return {"parks": parks, "file_sha256": file_sha256}


def _stored(doc: DocumentVersion) -> StoredRegistry:
    try:
        registry = Registry.model_validate({"parks": doc.body.get("parks", [])})
    except ValidationError as exc:
        raise RegistryError([f"stored registry version {doc.version}: {exc}"]) from exc
    sha = doc.body.get("file_sha256")
    return StoredRegistry(
        registry=registry,
        version=doc.version,
        file_sha256=sha if isinstance(sha, str) else None,
        updated_at=doc.created_at,
        updated_by=doc.created_by,
        comment=doc.comment,
    )


class RegistryStore:
    """Reads and writes registry versions in the ledger store; imports the file (if any)."""

    def __init__(self, ledgers: LedgerStore, path: Path | None = None) -> None:
        self.ledgers = ledgers
        self.path = path

    # -- reading ----------------------------------------------------------------------

    def latest(self) -> StoredRegistry | None:
        doc = self.ledgers.get_registry()
        return None if doc is None else _stored(doc)

    def get(self, version: int) -> StoredRegistry | None:
        doc = self.ledgers.get_registry(version)
        return None if doc is None else _stored(doc)

    def history(self) -> list[tuple[StoredRegistry, RegistryDiff]]:
        """Every version, oldest first, each with what it changed against the one before."""
        out: list[tuple[StoredRegistry, RegistryDiff]] = []
        previous = Registry()
        for doc in self.ledgers.registry_versions():
            stored = _stored(doc)
            out.append((stored, diff_registries(previous, stored.registry)))
            previous = stored.registry
        return out

    def _file(self) -> tuple[str, str] | None:
        """(text, sha256) of the registry file; None when none is configured or it is missing
        (the stored versions then carry on alone)."""
        if self.path is None:
            return None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(
                [f"{self.path}: cannot read the park registry: {exc.strerror or exc}"]
            ) from exc
        return raw.decode("utf-8", errors="replace"), hashlib.sha256(raw).hexdigest()

    # -- writing ----------------------------------------------------------------------

    def save(
        self,
        registry: Registry,
        base: Registry,
        actor: str,
        *,
        expected_version: int | None,
        comment: str = "",
    ) -> tuple[StoredRegistry, RegistryDiff]:
        """Store `registry` as the next version (audited with what changed against `base`).
        VersionConflictError when the stored version is not `expected_version`."""
        latest = self.ledgers.get_registry()
        file_sha = latest.body.get("file_sha256") if latest is not None else None
        diff = diff_registries(base, registry)
        doc = self.ledgers.put_registry(
            registry_body(registry, file_sha if isinstance(file_sha, str) else None),
            actor,
            comment=comment,
            expected_version=expected_version,
            details={"changes": diff.summary()},
        )
        return _stored(doc), diff

    def _import_file(self, text: str, sha: str, current: StoredRegistry | None) -> StoredRegistry:
        registry = parse_registry(text, str(self.path))
        if current is not None and current.updated_by != FILE_ACTOR:
            log.warning(
                "the registry file %s changed: it replaces version %d (edited by %s)",
                self.path,
                current.version,
                current.updated_by,
            )
        base = current.registry if current is not None else Registry()
        diff = diff_registries(base, registry)
        doc = self.ledgers.put_registry(
            registry_body(registry, sha),
            FILE_ACTOR,
            comment=f"imported from {self.path}",
            expected_version=current.version if current is not None else 0,
            details={"changes": diff.summary(), "file_sha256": sha},
        )
        log.info("registry file %s imported as version %d", self.path, doc.version)
        return _stored(doc)

    # -- keeping a process current -------------------------------------------------------

    def startup(self) -> StoredRegistry:
        """The registry to start with: the newest stored version, after importing the file
        if it changed. Without a reachable ledger, the file alone (version 0)."""
        file = self._file()
        try:
            for _ in range(5):
                current = self.latest()
                if file is None or (current is not None and current.file_sha256 == file[1]):
                    if current is None:
                        raise RegistryError(
                            [f"{self.path}: cannot read the park registry: no such file"]
                        )
                    return current
                try:
                    return self._import_file(file[0], file[1], current)
                except VersionConflictError:
                    continue  # another process imported it at the same moment: read again
        except SQLAlchemyError as exc:
            if file is None:
                raise
            log.warning("ledger store unreachable (%s): using the registry file as is", exc)
            return StoredRegistry(parse_registry(file[0], str(self.path)), 0, None)
        raise RegistryError(["the stored registry keeps changing; try again"])

    def poll(self, version: int, file_sha256: str | None) -> StoredRegistry | None:
        """What a process holding (`version`, `file_sha256`) should switch to, or None.

        Loads a newer stored version (an edit made through another process), then imports
        the file if its content differs from the one the newest version descends from.
        Raises RegistryError (bad file) or SQLAlchemyError (ledger down) for the caller to log.
        """
        newer: StoredRegistry | None = None
        if self.ledgers.latest_registry_version() > version:
            newer = self.latest()
        sha = newer.file_sha256 if newer is not None else file_sha256
        file = self._file()
        if file is not None and file[1] != sha:
            current = newer or self.latest()
            if current is None or current.file_sha256 != file[1]:
                try:
                    return self._import_file(file[0], file[1], current)
                except VersionConflictError:
                    return self.latest()
            return current
        return newer


class RegistryWatcher:
    """Polls the `RegistryStore` and switches the holder; logs each new problem once."""

    def __init__(self, store: RegistryStore, holder: RegistryHolder, every_s: float = 5.0):
        self.store = store
        self.holder = holder
        self.every_s = every_s
        self._problem: str | None = None

    async def check(self) -> bool:
        """One poll; True when the holder switched to another version."""
        h = self.holder
        try:
            found = await asyncio.to_thread(self.store.poll, h.version, h.file_sha256)
        except (RegistryError, SQLAlchemyError, OSError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if problem != self._problem:
                log.warning("park registry not reloaded (keeping version %d): %s", h.version, exc)
                self._problem = problem
            return False
        if self._problem is not None:
            log.info("park registry reload works again")
            self._problem = None
        if found is None:
            return False
        if found.version == h.version:
            h.file_sha256 = found.file_sha256  # the file was already imported by another process
            return False
        # listeners run here, on the event loop, never in the worker thread above
        change = h.replace(found.registry, found.version, found.file_sha256)
        if change is not None:
            log.info("park registry version %d in force: %s", found.version, change.diff.summary())
        return change is not None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self.check()


def open_registry(
    ledgers: LedgerStore, path: Path | None, poll_s: float = 5.0
) -> tuple[RegistryHolder, RegistryWatcher]:
    """A process's registry: the version in force at start, and the watcher that keeps it
    current (run `watcher.run()` as a task)."""
    store = RegistryStore(ledgers, path)
    start = store.startup()
    holder = RegistryHolder(start.registry, start.version, start.file_sha256)
    return holder, RegistryWatcher(store, holder, poll_s)
