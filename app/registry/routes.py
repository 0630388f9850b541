"""`/api/v1/parks` and `/api/v1/registry`: read the park registry; managers edit it (versioned,
audited, in force at once in this process and within `LINGTAN_REGISTRY_POLL_S` elsewhere)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import yaml
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from app.auth.deps import (
    AllParksAuditor,
    AllParksManager,
    AllParksViewer,
    Manager,
    Principal,
    Viewer,
)
from app.http.openapi import (
    CONFLICT,
    INVALID,
    NEEDS_KEY,
    NEEDS_ROLE,
    NOT_FOUND,
    PRECONDITION_FAILED,
    UNREADABLE_BODY,
)
from app.http.services import Services, SvcDep, park_or_404
from app.ledgers import ApiRole, VersionConflictError
from app.ledgers.registry_store import RegistryStore, StoredRegistry
from app.registry.diff import ALIGNMENT_FIELDS, RegistryDiff, diff_registries
from app.registry.models import ID_PATTERN, Device, Park, Registry

router = APIRouter(prefix="/api/v1", tags=["parks"], responses=NEEDS_KEY)

YAML_MEDIA = "application/yaml"
_COMMENT = Query("", max_length=500, description="why: kept with the version and in the audit log")
_FORCE = Query(
    False,
    description="admins only: allow changing a park's timezone or interval_minutes, which cuts"
    " its future intervals differently from those already stored",
)


def park_doc(park: Park) -> dict[str, Any]:
    return park.model_dump(mode="json", exclude_none=True)


class RegistryIn(BaseModel):
    """A whole registry, as GET /api/v1/registry returns it (the read-only fields may stay)."""

    model_config = ConfigDict(extra="forbid")

    parks: tuple[Park, ...]
    version: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,
        description="the version this edit starts from; if the registry has moved on since,"
        " the edit is refused with 412 instead of overwriting the other change",
    )
    comment: str = Field("", max_length=500)
    updated_at: datetime | None = Field(None, description="read-only, ignored")
    updated_by: str | None = Field(None, description="read-only, ignored")
    source: str | None = Field(None, description="read-only, ignored")


class ParkIn(Park):
    """A park; `id` may be left out (it is the path's)."""

    id: str | None = Field(None, pattern=ID_PATTERN)  # type: ignore[assignment]


class DeviceIn(Device):
    """A device; `id` may be left out (it is the path's)."""

    id: str | None = Field(None, pattern=ID_PATTERN)  # type: ignore[assignment]


class RegistryMeta(BaseModel):
    """Who made a registry version, when and why."""

    version: int = Field(description="0: the registry file, not stored (ledger unreachable)")
    updated_at: datetime | None
    updated_by: str | None
    comment: str
    source: Literal["file", "api"] | None


class RegistryVersion(RegistryMeta):
    """A version and what it changed against the one before (ids, `park/device`)."""

    changes: dict[str, Any] = Field(default_factory=dict)


class RegistryDoc(RegistryMeta):
    """A whole registry version; send it back to PUT /api/v1/registry after editing."""

    parks: list[dict[str, Any]]


def _meta(stored: StoredRegistry | None, version: int) -> dict[str, Any]:
    return {
        "version": version,
        "updated_at": stored.updated_at if stored else None,
        "updated_by": stored.updated_by if stored else None,
        "comment": stored.comment if stored else "",
        "source": stored.source if stored else None,
    }


def _version(stored: StoredRegistry | None, version: int, diff: RegistryDiff) -> dict[str, Any]:
    return {**_meta(stored, version), "changes": diff.summary()}


def _doc(stored: StoredRegistry | None, registry: Registry, version: int) -> dict[str, Any]:
    return {**_meta(stored, version), "parks": [park_doc(p) for p in registry.parks]}


async def _current(svc: Services) -> StoredRegistry | None:
    """The newest stored version, switching this process to it if another process stored it
    (so an edit always applies to the newest registry)."""
    stored = await run_in_threadpool(RegistryStore(svc.ledgers).latest)
    holder = svc.registry_holder
    if stored is not None and stored.version > holder.version:
        holder.replace(stored.registry, stored.version, stored.file_sha256)
    return stored if stored is not None and stored.version == holder.version else None


async def _edit(
    svc: Services,
    who: Principal,
    change: Callable[[Registry], Registry],
    *,
    comment: str,
    force: bool,
    expected_version: int | None = None,
) -> RegistryVersion:
    """Apply `change` to the registry in force, store it as the next version and switch."""
    await _current(svc)
    holder = svc.registry_holder
    base, base_version = holder.registry, holder.version
    try:
        new = change(base)
    except ValidationError as exc:
        raise HTTPException(422, _problems(exc)) from None
    diff = diff_registries(base, new)
    if diff.realigned:
        if not force:
            raise HTTPException(
                409,
                f"changing {' or '.join(ALIGNMENT_FIELDS)} of {', '.join(diff.realigned)} cuts"
                " new intervals differently from the stored ones; register a new park id, or"
                " (admin) repeat with force=true",
            )
        if not who.role.allows(ApiRole.ADMIN):
            raise HTTPException(403, "force=true needs the admin role")
    if not diff:  # nothing to store: answer with the version in force
        return RegistryVersion.model_validate(_version(await _current(svc), base_version, diff))
    store = RegistryStore(svc.ledgers)
    expected = base_version if expected_version is None else expected_version
    try:
        stored, diff = await run_in_threadpool(
            lambda: store.save(new, base, who.actor, expected_version=expected, comment=comment)
        )
    except VersionConflictError as exc:
        if expected_version is not None:
            raise HTTPException(412, f"{exc}: read the registry again and redo the edit") from None
        raise HTTPException(409, f"the registry changed meanwhile ({exc}); try again") from None
    holder.replace(stored.registry, stored.version, stored.file_sha256)
    return RegistryVersion.model_validate(_version(stored, stored.version, diff))


def _problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _with_park(registry: Registry, park: Park) -> Registry:
    parks = [park if p.id == park.id else p for p in registry.parks]
    if registry.park(park.id) is None:
        parks.append(park)
    return Registry.model_validate({"parks": [park_doc(p) for p in parks]})


def _with_devices(
    registry: Registry, park_id: str, edit: Callable[[list[Device]], list[Device]]
) -> Registry:
    """`registry` with the device list of `park_id` edited (404 if the park is gone)."""
    park = registry.park(park_id)
    if park is None:
        raise HTTPException(404, f"unknown park {park_id!r}")
    devices = tuple(edit(list(park.devices)))
    return _with_park(registry, park.model_copy(update={"devices": devices}))


@router.get("/parks", summary="The parks and their devices")
async def list_parks(svc: SvcDep, who: Viewer) -> dict[str, Any]:
    # a key scoped to parks sees those only
    return {"items": [park_doc(p) for p in svc.registry.parks if who.covers(p.id)]}


@router.get("/parks/{park}", summary="One park and its devices", responses=NOT_FOUND)
async def get_park(park: str, svc: SvcDep, _: Viewer) -> dict[str, Any]:
    return park_doc(park_or_404(svc, park))


@router.get(
    "/registry",
    summary="The registry in force with its version (YAML with Accept: application/yaml)",
    response_model=RegistryDoc,
    responses={200: {"content": {YAML_MEDIA: {"schema": {"type": "string"}}}}},
)
async def get_registry(request: Request, svc: SvcDep, _: AllParksViewer) -> Any:
    holder = svc.registry_holder
    stored = await _current(svc)
    doc = _doc(stored, holder.registry, holder.version)
    accept = request.headers.get("accept", "")
    if YAML_MEDIA in accept or "text/yaml" in accept:
        text = (
            f"# Lingtan park registry, version {doc['version']}"
            f" ({doc['updated_by'] or 'file'}, {doc['updated_at'] or 'not stored'})\n"
            + yaml.safe_dump({"parks": doc["parks"]}, allow_unicode=True, sort_keys=False)
        )
        return Response(text, media_type=YAML_MEDIA)
    return doc


#: every edit goes through `_edit`: 403 for force=true below admin, 409 for a realignment
#: without force or a concurrent edit, 422 for a registry that does not validate
_EDIT = {**NEEDS_ROLE, **CONFLICT, **INVALID}


@router.put(
    "/registry",
    summary="Replace the whole registry (a new audited version)",
    responses={**_EDIT, **PRECONDITION_FAILED, **UNREADABLE_BODY},
)
async def put_registry(
    body: RegistryIn,
    svc: SvcDep,
    who: AllParksManager,
    force: bool = _FORCE,
) -> RegistryVersion:
    def change(_: Registry) -> Registry:
        return Registry.model_validate({"parks": [park_doc(p) for p in body.parks]})

    return await _edit(
        svc, who, change, comment=body.comment, force=force, expected_version=body.version
    )


@router.put(
    "/parks/{park}",
    summary="Add a park or replace one (a new audited registry version)",
    responses={201: {"description": "park added"}, **_EDIT, **UNREADABLE_BODY},
)
async def put_park(
    park: str,
    body: ParkIn,
    response: Response,
    svc: SvcDep,
    who: Manager,
    comment: str = _COMMENT,
    force: bool = _FORCE,
) -> RegistryVersion:
    if body.id is not None and body.id != park:
        raise HTTPException(422, f"body id {body.id!r} differs from the path's {park!r}")
    existed = svc.registry.park(park) is not None

    def change(registry: Registry) -> Registry:
        new = Park.model_validate({**body.model_dump(mode="json", exclude_none=True), "id": park})
        return _with_park(registry, new)

    out = await _edit(svc, who, change, comment=comment, force=force)
    if not existed:
        response.status_code = 201
    return out


@router.delete(
    "/parks/{park}",
    summary="Remove a park (its stored data stays; a new version)",
    responses={**_EDIT, **NOT_FOUND},
)
async def delete_park(
    park: str, svc: SvcDep, who: Manager, comment: str = _COMMENT
) -> RegistryVersion:
    park_or_404(svc, park)

    def change(registry: Registry) -> Registry:
        return Registry(parks=tuple(p for p in registry.parks if p.id != park))

    return await _edit(svc, who, change, comment=comment, force=False)


@router.put(
    "/parks/{park}/devices/{device}",
    summary="Add a device to a park or replace one (a new audited registry version)",
    responses={201: {"description": "device added"}, **_EDIT, **NOT_FOUND, **UNREADABLE_BODY},
)
async def put_device(
    park: str,
    device: str,
    body: DeviceIn,
    response: Response,
    svc: SvcDep,
    who: Manager,
    comment: str = _COMMENT,
) -> RegistryVersion:
    if body.id is not None and body.id != device:
        raise HTTPException(422, f"body id {body.id!r} differs from the path's {device!r}")
    existed = park_or_404(svc, park).device(device) is not None

    def change(registry: Registry) -> Registry:
        new = Device.model_validate(
            {**body.model_dump(mode="json", exclude_none=True), "id": device}
        )

        def put(devices: list[Device]) -> list[Device]:
            if any(d.id == device for d in devices):
                return [new if d.id == device else d for d in devices]
            return [*devices, new]

        return _with_devices(registry, park, put)

    out = await _edit(svc, who, change, comment=comment, force=False)
    if not existed:
        response.status_code = 201
    return out


@router.delete(
    "/parks/{park}/devices/{device}",
    summary="Remove a device (its stored data stays; its telemetry is dead-lettered from now)",
    responses={**_EDIT, **NOT_FOUND},
)
async def delete_device(
    park: str, device: str, svc: SvcDep, who: Manager, comment: str = _COMMENT
) -> RegistryVersion:
    if park_or_404(svc, park).device(device) is None:
        raise HTTPException(404, f"unknown device {device!r} in park {park!r}")

    def change(registry: Registry) -> Registry:
        return _with_devices(registry, park, lambda ds: [d for d in ds if d.id != device])

    return await _edit(svc, who, change, comment=comment, force=False)


@router.get(
    "/registry/versions",
    summary="Every stored registry version and what it changed",
    responses=NEEDS_ROLE,
)
async def registry_versions(svc: SvcDep, _: AllParksAuditor) -> dict[str, Any]:
    history = await run_in_threadpool(RegistryStore(svc.ledgers).history)
    return {"items": [_version(s, s.version, d) for s, d in reversed(history)]}


@router.get(
    "/registry/versions/{version}",
    summary="One stored registry version, whole",
    responses={**NEEDS_ROLE, **NOT_FOUND},
)
async def registry_version(
    svc: SvcDep, _: AllParksAuditor, version: int = PathParam(ge=1, le=2**31 - 1)
) -> RegistryDoc:
    stored = await run_in_threadpool(RegistryStore(svc.ledgers).get, version)
    if stored is None:
        raise HTTPException(404, f"no registry version {version}")
    return RegistryDoc.model_validate(_doc(stored, stored.registry, stored.version))
