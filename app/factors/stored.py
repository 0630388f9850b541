"""User factor sets kept in the ledger store, as a cached read-only name → `FactorSet` map."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping

from app.accounting.factors import FactorSet
from app.factors.codec import set_from_json
from app.ledgers import FACTOR_SET_KIND, LedgerStore

log = logging.getLogger(__name__)


class StoredFactorSets(Mapping[str, FactorSet]):
    """The latest version of every stored factor set, loaded lazily and cached until
    `invalidate()` (called after a POST). Pass it as `extra=` to `get_factor_set`."""

    def __init__(self, ledgers: LedgerStore) -> None:
        self.ledgers = ledgers
        self._lock = threading.Lock()
        self._sets: dict[str, FactorSet] | None = None
        self._versions: dict[str, int] = {}

    def names(self) -> list[str]:
        return self.ledgers.list_document_names(FACTOR_SET_KIND)

    def _load(self) -> dict[str, FactorSet]:
        sets: dict[str, FactorSet] = {}
        versions: dict[str, int] = {}
        for name in self.names():
            doc = self.ledgers.get_factor_set(name)
            if doc is None:
                continue
            try:
                sets[name] = set_from_json(doc.body["set"])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # a document not written by this API (e.g. a hand-made override) is skipped
                log.warning("stored factor set %r v%d ignored: %s", name, doc.version, exc)
                continue
            versions[name] = doc.version
        self._versions = versions
        return sets

    def loaded(self) -> dict[str, FactorSet]:
        with self._lock:
            if self._sets is None:
                self._sets = self._load()
            return self._sets

    def version(self, name: str) -> int | None:
        self.loaded()
        return self._versions.get(name)

    def invalidate(self) -> None:
        with self._lock:
            self._sets = None

    def __getitem__(self, name: str) -> FactorSet:
        return self.loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.loaded())

    def __len__(self) -> int:
        return len(self.loaded())
