"""Balance over HTTP: per-day interval-totals cache, the balance service and `/balance`."""

from app.balance.cache import IntervalCache
from app.balance.service import BalanceService

__all__ = ["BalanceService", "IntervalCache"]
