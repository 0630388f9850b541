"""`GET /api/v1/parks`: the parks of the registry and their devices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.auth.deps import Viewer
from app.http.openapi import NEEDS_KEY, NOT_FOUND
from app.http.services import SvcDep, park_or_404
from app.registry.models import Park

router = APIRouter(prefix="/api/v1", tags=["parks"], responses=NEEDS_KEY)


def park_doc(park: Park) -> dict[str, Any]:
    return park.model_dump(mode="json", exclude_none=True)


@router.get("/parks", summary="The parks and their devices")
async def list_parks(svc: SvcDep, _: Viewer) -> dict[str, Any]:
    return {"items": [park_doc(p) for p in svc.registry.parks]}


@router.get("/parks/{park}", summary="One park and its devices", responses=NOT_FOUND)
async def get_park(park: str, svc: SvcDep, _: Viewer) -> dict[str, Any]:
    return park_doc(park_or_404(svc, park))
