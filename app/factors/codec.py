"""JSON form of a `FactorSet` and deriving a user set from a base set plus overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from app.accounting.factors import Factor, FactorSet, FuelFactors, validate_factor_set

#: Top-level single factors an override key may name directly.
SCALAR_KEYS = ("residual", "heat", "electricity_coal", "heat_coal")


def factor_to_json(f: Factor) -> dict[str, Any]:
    return {"value": f.value, "unit": f.unit, "source": f.source, "year": f.year}


def factor_from_json(d: Mapping[str, Any]) -> Factor:
    return Factor(float(d["value"]), str(d["unit"]), str(d["source"]), int(d["year"]))


def set_to_json(fs: FactorSet) -> dict[str, Any]:
    """Every factor with value, unit, source and year; fuels keyed `fuel/counter`."""
    return {
        "name": fs.name,
        "year": fs.year,
        "description": fs.description,
        "grid": {k: factor_to_json(v) for k, v in sorted(fs.grid.items())},
        "residual": factor_to_json(fs.residual),
        "fuels": {
            f"{fuel}/{counter}": {"co2": factor_to_json(ff.co2), "coal": factor_to_json(ff.coal)}
            for (fuel, counter), ff in sorted(fs.fuels.items())
        },
        "heat": factor_to_json(fs.heat),
        "hydrogen": {k: factor_to_json(v) for k, v in sorted(fs.hydrogen.items())},
        "electricity_coal": factor_to_json(fs.electricity_coal),
        "heat_coal": factor_to_json(fs.heat_coal),
        "extra": {k: factor_to_json(v) for k, v in sorted(fs.extra.items())},
    }


def set_from_json(d: Mapping[str, Any]) -> FactorSet:
    """Inverse of `set_to_json`, validated (ValueError/KeyError on a malformed document)."""
    fuels: dict[tuple[str, str], FuelFactors] = {}
    for key, ff in d["fuels"].items():
        fuel, counter = key.split("/", 1)
        fuels[(fuel, counter)] = FuelFactors(
            factor_from_json(ff["co2"]), factor_from_json(ff["coal"])
        )
    return validate_factor_set(
        FactorSet(
            name=str(d["name"]),
            year=int(d["year"]),
            description=str(d["description"]),
            grid=MappingProxyType({k: factor_from_json(v) for k, v in d["grid"].items()}),
            residual=factor_from_json(d["residual"]),
            fuels=MappingProxyType(fuels),
            heat=factor_from_json(d["heat"]),
            hydrogen=MappingProxyType({k: factor_from_json(v) for k, v in d["hydrogen"].items()}),
            electricity_coal=factor_from_json(d["electricity_coal"]),
            heat_coal=factor_from_json(d["heat_coal"]),
            extra=MappingProxyType({k: factor_from_json(v) for k, v in d["extra"].items()}),
        )
    )


def _factor(override: Mapping[str, Any], old: Factor | None, key: str) -> Factor:
    unit = override.get("unit") or (old.unit if old is not None else None)
    if not unit:
        raise ValueError(f"override {key!r}: a unit is required for a factor the base lacks")
    return Factor(
        float(override["value"]), str(unit), str(override["source"]), int(override["year"])
    )


def derive(
    base: FactorSet,
    name: str,
    overrides: Mapping[str, Mapping[str, Any]],
    *,
    year: int | None = None,
    description: str | None = None,
) -> FactorSet:
    """`base` under `name` with `overrides` applied, validated.

    Override keys: `grid.<region>`, `hydrogen.<class>`, `extra.<key>` (added or replaced),
    `fuel.<fuel>.<counter>.co2|coal` (the fuel must exist in the base), and `residual`,
    `heat`, `electricity_coal`, `heat_coal`. Each override is `{value, source, year}` plus
    `unit` (defaults to the replaced factor's unit). Unknown keys → ValueError.
    """
    grid = dict(base.grid)
    hydrogen = dict(base.hydrogen)
    extra = dict(base.extra)
    fuels = dict(base.fuels)
    scalars: dict[str, Factor] = {}
    groups: dict[str, dict[str, Factor]] = {"grid": grid, "hydrogen": hydrogen, "extra": extra}
    for key, ov in overrides.items():
        head, _, rest = key.partition(".")
        if key in SCALAR_KEYS:
            old: Factor = getattr(base, key)
            scalars[key] = _factor(ov, old, key)
        elif head in groups and rest:
            group = groups[head]
            group[rest] = _factor(ov, group.get(rest), key)
        elif head == "fuel" and rest.count(".") == 2:
            fuel, counter, which = rest.split(".")
            ff = fuels.get((fuel, counter))
            if ff is None or which not in ("co2", "coal"):
                raise ValueError(
                    f"override {key!r}: the base has no fuel {fuel}/{counter} "
                    "(or the last part is not co2|coal)"
                )
            new = _factor(ov, getattr(ff, which), key)
            fuels[(fuel, counter)] = replace(ff, **{which: new})
        else:
            raise ValueError(f"unknown override key {key!r}")
    derived = replace(
        base,
        name=name,
        year=base.year if year is None else year,
        description=base.description if description is None else description,
        grid=MappingProxyType(grid),
        hydrogen=MappingProxyType(hydrogen),
        extra=MappingProxyType(extra),
        fuels=MappingProxyType(fuels),
        **scalars,
    )
    return validate_factor_set(derived)
