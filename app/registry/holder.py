"""The registry in force in this process, its stored version, and who to tell when it changes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from app.registry.diff import RegistryDiff, diff_registries
from app.registry.models import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegistryChange:
    """One switch from `old` to `new` (stored version `version`)."""

    old: Registry
    new: Registry
    version: int
    diff: RegistryDiff


Listener = Callable[[RegistryChange], object]


class RegistryHolder:
    """Holds the current `Registry`; `replace` swaps it and calls every listener in order.

    Components keep a reference to the holder (or subscribe) instead of a frozen Registry, so
    an edit through the API or the file reaches the decoder, the interval engine, the live
    view and the balance cache without a restart. Version 0 = not (yet) stored anywhere.
    """

    def __init__(self, registry: Registry, version: int = 0, file_sha256: str | None = None):
        self._registry = registry
        self.version = version
        #: digest of the registry file the stored version descends from (None: not from a file)
        self.file_sha256 = file_sha256
        self._listeners: list[Listener] = []

    @property
    def registry(self) -> Registry:
        return self._registry

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def replace(
        self, registry: Registry, version: int, file_sha256: str | None = None
    ) -> RegistryChange | None:
        """Switch to `registry` unless `version` is older than the one held (a slow reader
        must not roll back a newer edit). Returns the change, or None when ignored."""
        if version < self.version:
            return None
        old = self._registry
        self._registry = registry
        self.version = version
        self.file_sha256 = file_sha256
        change = RegistryChange(old, registry, version, diff_registries(old, registry))
        if not change.diff:
            return change
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # one broken listener must not keep the others on the old registry
                log.exception("registry listener %r failed on version %d", listener, version)
        return change
