"""Choose the storage backend from settings: InfluxDB when configured, else the embedded store."""

from __future__ import annotations

import logging
from pathlib import Path

from app.config import Settings
from app.storage.base import Storage, StorageUnavailable

log = logging.getLogger(__name__)

EMBEDDED_FILENAME = "lingtan-store.sqlite"


class StorageNotConfigured(ValueError):
    """No storage backend is configured (kept for callers; `open_storage` no longer raises it)."""


def embedded_path(settings: Settings) -> Path:
    """Where the embedded store lives: `LINGTAN_DATA_DIR/lingtan-store.sqlite`."""
    return settings.data_dir / EMBEDDED_FILENAME


async def open_storage(settings: Settings) -> Storage:
    """Open the configured store.

    With `LINGTAN_INFLUX_URL` set: InfluxDB (an unreachable server is not fatal, the spool
    covers it). Without: the embedded SQLite store in `LINGTAN_DATA_DIR`, created on first use
    (a path that cannot be opened raises `StorageUnavailable` naming it).
    """
    # each backend is imported when chosen (docs/performance.md, "Collector start-up")
    if not settings.influx_url:
        from app.storage.embedded import EmbeddedStorage

        path = embedded_path(settings)
        log.info("storage: embedded SQLite store at %s (LINGTAN_INFLUX_URL not set)", path)
        return EmbeddedStorage(path, raw_retention_days=settings.raw_retention_days)
    from app.storage.influx import InfluxStorage

    log.info("storage: InfluxDB at %s, database %s", settings.influx_url, settings.influx_db)
    storage = InfluxStorage(
        settings.influx_url,
        database=settings.influx_db,
        token=settings.influx_token.get_secret_value() if settings.influx_token else None,
        username=settings.influx_user,
        password=settings.influx_password.get_secret_value() if settings.influx_password else None,
    )
    try:
        await storage.ensure_database()
    except StorageUnavailable as exc:
        log.warning(
            "InfluxDB at %s is not reachable yet (%s); spooling until it is",
            settings.influx_url,
            exc,
        )
    return storage
