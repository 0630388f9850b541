"""Choose the storage backend from settings: InfluxDB when configured."""

from __future__ import annotations

import logging

from app.config import Settings
from app.storage.base import Storage, StorageUnavailable
from app.storage.influx import InfluxStorage

log = logging.getLogger(__name__)


class StorageNotConfigured(ValueError):
    """No storage backend is configured."""


async def open_storage(settings: Settings) -> Storage:
    """Open the configured store; an unreachable InfluxDB is not fatal (the spool covers it)."""
    if not settings.influx_url:
        raise StorageNotConfigured(
            "no storage configured: set LINGTAN_INFLUX_URL (e.g. http://127.0.0.1:8086)"
            " or pass --influx-url"
        )
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
