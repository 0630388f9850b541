"""Interval totals summed inside InfluxDB (GROUP BY time, role): the fast cold-cache path."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from app.accounting import IntervalTotals, interval_totals
from app.intervals.models import IntervalEnergy
from app.registry.models import SUBMETER_ROLES, Park, Role
from app.storage.influx import InfluxStorage, influxql_string
from app.storage.schema import INTERVAL

#: roles whose interval amounts only ever enter the balance as a per-role sum
SUMMED_ROLES: tuple[Role, ...] = (
    Role.GRID,
    Role.PV,
    Role.WIND,
    Role.GREEN_DIRECT,
    *sorted(SUBMETER_ROLES),
)
_NS_PER_MIN = 60_000_000_000


def _tags(key: str) -> dict[str, str]:
    # "interval_energy,device=d1,park=p,role=pv": registry ids never need escaping
    # ([A-Za-z0-9_.-]); a key that does is reported as a mismatch by the caller.
    out: dict[str, str] = {}
    for part in key.split(",")[1:]:
        k, _, v = part.partition("=")
        out[k] = v
    return out


async def series_match_registry(storage: InfluxStorage, park: Park) -> bool:
    """True when every interval series of `park` is a registry device tagged with its role.

    Only then can rows be summed by their `role` tag (the registry's role is authoritative;
    a device whose role changed, or one not in the registry, needs the row-by-row path).
    """
    q = f'SHOW SERIES FROM "{INTERVAL}" WHERE "park" = {influxql_string(park.id)}'
    for s in await storage.query(q):
        for row in s.values:
            key = str(row[0])
            if "\\" in key:
                return False
            tags = _tags(key)
            dev = park.device(tags.get("device", ""))
            if dev is None or dev.role.value != tags.get("role"):
                return False
    return True


def _col(columns: Sequence[str], row: Sequence[Any], name: str) -> float:
    v = row[columns.index(name)] if name in columns else None
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else 0.0


async def aggregated_totals(
    storage: InfluxStorage, park: Park, start_ns: int, end_ns: int
) -> list[IntervalTotals]:
    """`interval_totals` of [start_ns, end_ns) with the summable roles summed by influxd.

    Storage, fuel, heat and hydrogen devices (per-device state or per-fuel factors) are read
    row by row as usual; grid, pv, wind, green-direct and sub-meters come back as one row per
    interval and role, which is what makes a cold year of a 1,000-meter park affordable.
    """
    step = math.gcd(park.interval_minutes, 15)  # every local boundary is on this UTC grid
    base = (
        f'"park" = {influxql_string(park.id)} AND time >= {int(start_ns)} AND time < {int(end_ns)}'
    )
    group = f'GROUP BY time({step}m), "role" fill(none)'
    sub = "|".join(sorted(r.value for r in SUBMETER_ROLES))
    # One query per group of roles, each reading only the fields that group has: influxd
    # 1.x spends its time per series, window and aggregate, so this is ~2× one wide query.
    queries = [
        f'SELECT sum("energy_import_kwh") AS imp, sum("energy_export_kwh") AS exp,'
        f' count("duration_s") AS n FROM "{INTERVAL}" WHERE {base} AND "role" = \'grid\' {group}',
        f'SELECT sum("energy_kwh") AS gen, count("duration_s") AS n FROM "{INTERVAL}"'
        f' WHERE {base} AND "role" =~ /^(pv|wind)$/ {group}',
        f'SELECT sum("energy_import_kwh") AS imp, count("duration_s") AS n FROM "{INTERVAL}"'
        f" WHERE {base} AND \"role\" = 'green_direct' {group}",
        f'SELECT sum("energy_import_kwh") AS imp FROM "{INTERVAL}"'
        f' WHERE {base} AND "role" =~ /^({sub})$/ {group}',
        f'SELECT count("duration_s") AS n FROM "{INTERVAL}" WHERE {base}'
        f' AND "role" =~ /^(grid|pv|wind|green_direct)$/ AND "estimated" = true {group}',
    ]
    results = await asyncio.gather(*(storage.query(q) for q in queries))
    ests = results[-1]
    sums = [s for r in results[:-1] for s in r]
    others = [d for d in park.devices if d.role not in SUMMED_ROLES]
    rows = await asyncio.gather(
        *(storage.intervals(park.id, start_ns, end_ns, d.id) for d in others)
    )
    special: list[IntervalEnergy] = [r for chunk in rows for r in chunk]
    by_start: dict[int, IntervalTotals] = {t.start_ns: t for t in interval_totals(special, park)}
    length_ns = park.interval_minutes * _NS_PER_MIN

    def total_at(t_ns: int) -> IntervalTotals:
        t = by_start.get(t_ns)
        if t is None:
            t = by_start[t_ns] = IntervalTotals(t_ns, t_ns + length_ns)
        return t

    estimated: dict[tuple[int, str], int] = {}
    for s in ests:
        role = s.tags.get("role", "")
        for row in s.values:
            estimated[(int(row[0]), role)] = int(_col(s.columns, row, "n"))
    for s in sums:
        role = Role(s.tags["role"])
        for row in s.values:
            t = total_at(int(row[0]))
            imp = _col(s.columns, row, "imp")
            if role in SUBMETER_ROLES:
                t.submeter_kwh[role.value] = t.submeter_kwh.get(role.value, 0.0) + imp
                continue
            n = int(_col(s.columns, row, "n"))
            est = estimated.get((int(row[0]), role.value), 0)
            t.estimated += est
            t.measured += n - est
            if role is Role.GRID:
                t.grid_import_kwh += imp
                t.grid_export_kwh += _col(s.columns, row, "exp")
            elif role is Role.GREEN_DIRECT:
                t.green_direct_kwh += imp
            else:
                t.renewable_kwh += _col(s.columns, row, "gen")
    return [by_start[k] for k in sorted(by_start)]
