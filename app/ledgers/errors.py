"""Errors the ledger store raises; the API maps them to HTTP status codes."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every ledger-store error."""


class DuplicateIdError(LedgerError):
    """An entry with this id already exists (in any park, revoked or not): HTTP 409."""

    def __init__(self, table: str, entry_id: str, park: str) -> None:
        self.table = table
        self.entry_id = entry_id
        self.park = park
        super().__init__(
            f"{table} id {entry_id!r} is already registered (park {park!r}); ids are unique"
            " across all parks and never reused, so one MWh or tonne cannot be counted twice"
        )


class NotFoundError(LedgerError):
    """No such entry (or it belongs to another park): HTTP 404."""


class AlreadyRevokedError(LedgerError):
    """The entry is already revoked: HTTP 409."""


class VersionConflictError(LedgerError):
    """A document changed since the version the caller read: HTTP 409."""
