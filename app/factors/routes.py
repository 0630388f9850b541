"""`/api/v1/factor-sets`: list and read built-in and user sets; admins add derived sets."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from app.accounting.factors import BUILTIN_FACTOR_SETS, FactorSet, get_factor_set
from app.auth.deps import Principal, Viewer, require
from app.factors.codec import derive, set_to_json
from app.factors.stored import StoredFactorSets
from app.http.openapi import (
    CONFLICT,
    INVALID,
    NEEDS_KEY,
    NEEDS_ROLE,
    NOT_FOUND,
    UNREADABLE_BODY,
)
from app.http.services import Services, SvcDep
from app.ledgers import ApiRole, VersionConflictError

router = APIRouter(prefix="/api/v1/factor-sets", tags=["factor-sets"], responses=NEEDS_KEY)

Admin = Annotated[Principal, Depends(require(ApiRole.ADMIN))]

#: Same alphabet as ledger document names, at most 64 characters (`validate_factor_set`).
NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
#: Override keys: `grid.northeast`, `fuel.diesel.fuel_l.co2`, …
KEY_PATTERN = r"^[A-Za-z0-9_.:/-]{1,100}$"


def _printable(v: str | None) -> str | None:
    # NUL and other control characters are refused here: PostgreSQL cannot store NUL in text
    if v is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in v):
        raise ValueError("control characters are not allowed")
    return v


class FactorIn(BaseModel):
    """One overriding factor; `unit` defaults to the unit of the factor it replaces."""

    model_config = ConfigDict(extra="forbid")

    value: float = Field(ge=0, le=1e9)
    unit: str | None = Field(None, min_length=1, max_length=40)
    source: str = Field(min_length=1, max_length=500)
    year: int = Field(ge=1990, le=2100)

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("value must be finite")
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a source is required (say 'not confirmed' if it is not)")
        return v

    _text = field_validator("source", "unit")(_printable)


class FactorSetCreate(BaseModel):
    """A new set derived from `based_on` (built-in or stored) with `overrides` applied.

    Override keys: `grid.<region>`, `hydrogen.<class>`, `extra.<key>`,
    `fuel.<fuel>.<counter>.co2|coal`, `residual`, `heat`, `electricity_coal`, `heat_coal`.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    based_on: str = Field("cn-2023", pattern=NAME_PATTERN)
    year: int | None = Field(None, ge=1990, le=2100)
    description: str | None = Field(None, max_length=500)
    overrides: dict[Annotated[str, Field(pattern=KEY_PATTERN)], FactorIn] = Field(
        default_factory=dict, max_length=200
    )
    comment: str = Field("", max_length=500)

    _text = field_validator("description", "comment")(_printable)


def stored_sets(svc: Services) -> StoredFactorSets:
    """The app's store-backed user sets (the one `BalanceService` resolves parks with)."""
    fs = svc.balance.factor_sets
    if isinstance(fs, StoredFactorSets):
        return fs
    # an app built without them still lists and accepts sets; keep one on the service
    stored = StoredFactorSets(svc.ledgers)
    svc.balance.factor_sets = stored
    return stored


def _summary(fs: FactorSet, builtin: bool, version: int | None) -> dict[str, Any]:
    sources = sorted({f.source for f in fs.grid.values()})
    return {
        "name": fs.name,
        "builtin": builtin,
        "version": version,
        "year": fs.year,
        "description": fs.description,
        "grid_source": sources[0] if len(sources) == 1 else "; ".join(sources),
    }


@router.get("", summary="Built-in and user factor sets (name, version, year, source summary)")
async def list_factor_sets(*, svc: SvcDep, _: Viewer) -> dict[str, Any]:
    stored = stored_sets(svc)
    user = await run_in_threadpool(stored.loaded)
    items = [_summary(fs, True, None) for fs in BUILTIN_FACTOR_SETS.values()]
    items += [_summary(fs, False, stored.version(n)) for n, fs in sorted(user.items())]
    return {"items": items}


@router.get(
    "/{name}",
    summary="One factor set: every factor's value, unit, source and year",
    responses=NOT_FOUND,
)
async def read_factor_set(*, name: str, svc: SvcDep, _: Viewer) -> dict[str, Any]:
    stored = stored_sets(svc)
    user = await run_in_threadpool(stored.loaded)
    try:
        fs = get_factor_set(name, user)
    except ValueError as exc:
        raise HTTPException(404, str(exc)) from None
    builtin = name in BUILTIN_FACTOR_SETS
    return {
        "builtin": builtin,
        "version": None if builtin else stored.version(name),
        **set_to_json(fs),
    }


@router.post(
    "",
    status_code=201,
    summary="Add a user factor set derived from a built-in or stored one (admin, audited)",
    responses={**NEEDS_ROLE, **CONFLICT, **INVALID, **UNREADABLE_BODY},
)
async def create_factor_set(*, body: FactorSetCreate, svc: SvcDep, who: Admin) -> dict[str, Any]:
    stored = stored_sets(svc)
    user = await run_in_threadpool(stored.loaded)
    if body.name in BUILTIN_FACTOR_SETS or body.name in user:
        raise HTTPException(
            409, f"factor set {body.name!r} already exists; register a change under a new name"
        )
    try:
        base = get_factor_set(body.based_on, user)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    overrides = {k: v.model_dump(exclude_none=True) for k, v in body.overrides.items()}
    try:
        new = derive(base, body.name, overrides, year=body.year, description=body.description)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    doc_body = {
        "format": 1,
        "based_on": base.name,
        "overrides": overrides,
        "set": set_to_json(new),
    }

    def put() -> int:
        # expected_version=0: a concurrent POST of the same name loses with a 409
        doc = svc.ledgers.put_factor_set(
            new.name, doc_body, who.actor, comment=body.comment, expected_version=0
        )
        return doc.version

    try:
        version = await run_in_threadpool(put)
    except VersionConflictError:
        raise HTTPException(409, f"factor set {body.name!r} already exists") from None
    finally:
        stored.invalidate()
    return {"builtin": False, "version": version, **set_to_json(new)}
