"""Registry helpers: add synthetic load meters for scale runs, write a registry back to YAML."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.registry.models import Device, Registry, Role
from simulator.rng import stream


def synthetic_id(index: int) -> str:
    return f"sim-load-{index:05d}"


def add_synthetic_loads(
    registry: Registry, n: int, park_ids: list[str] | None = None, seed: int = 0
) -> Registry:
    """A registry whose parks each get `n` extra load sub-meters `sim-load-00001`, ….

    They are ordinary `load` devices (factory or office shape, `max_kw` 50–500, seeded,
    `included_in` the park's first grid meter), so the collector must be given this registry
    too, or it dead-letters them as unknown devices.
    """
    if n <= 0:
        return registry
    parks = []
    for park in registry.parks:
        if park_ids is not None and park.id not in park_ids:
            parks.append(park)
            continue
        grid = next((d.id for d in park.devices if d.role is Role.GRID), None)
        rng = stream(seed, park.id, "synthetic-loads")
        extra = []
        for i in range(1, n + 1):
            kind = "office" if i % 3 == 0 else "line"
            extra.append(
                Device(
                    id=synthetic_id(i),
                    role=Role.LOAD,
                    name=f"synthetic {kind} {i}",
                    max_kw=float(round(rng.uniform(50.0, 500.0))),
                    included_in=grid,
                )
            )
        parks.append(park.model_copy(update={"devices": (*park.devices, *extra)}))
    # re-validate: ids unique, links resolvable
    return Registry.model_validate({"parks": [p.model_dump() for p in parks]})


def dump_registry(registry: Registry, path: Path) -> None:
    """Write the registry as YAML the collector can load (`LINGTAN_PARKS`)."""
    data = registry.model_dump(mode="json", exclude_none=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
