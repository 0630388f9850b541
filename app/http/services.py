"""The services one API instance works with, injected into `create_app` (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.alarms.engine import Alarms
from app.balance.service import BalanceService
from app.config import Settings
from app.http.limits import FailureLimiter
from app.http.metrics import ApiMetrics
from app.ledgers import LedgerStore
from app.ledgers.checkpoints import Checkpointer
from app.live.state import LiveState
from app.registry.holder import RegistryHolder
from app.registry.models import Park, Registry
from app.storage.base import Storage


@dataclass(slots=True)
class Services:
    """Everything the routers need; stored on `app.state.services`."""

    settings: Settings
    registry_holder: RegistryHolder
    storage: Storage
    ledgers: LedgerStore
    live: LiveState
    balance: BalanceService
    metrics: ApiMetrics
    auth_cache: dict[str, tuple[int, object]] = field(default_factory=dict)
    #: per-client-IP limiter of bad API keys (429)
    auth_failures: FailureLimiter = field(default_factory=lambda: FailureLimiter(20, 60.0))
    #: signs the audit head into the checkpoint file (docs/security.md)
    checkpointer: Checkpointer | None = None
    #: the alarm log and the open alarms per park (docs/alarms.md)
    alarms: Alarms | None = None

    @property
    def registry(self) -> Registry:
        """The registry in force now (edits switch it while the app runs)."""
        return self.registry_holder.registry


def services(request: Request) -> Services:
    """FastAPI dependency: the app's services."""
    svc: Services = request.app.state.services
    return svc


def park_or_404(svc: Services, park_id: str) -> Park:
    park = svc.registry.park(park_id)
    if park is None:
        raise HTTPException(404, f"unknown park {park_id!r}")
    return park


#: `svc: SvcDep` in a route signature injects the app's services.
SvcDep = Annotated[Services, Depends(services)]
