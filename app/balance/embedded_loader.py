"""Interval totals from the embedded store's per-role rollup: its cold-cache fast path."""

from __future__ import annotations

import asyncio

from app.accounting import IntervalTotals, interval_totals
from app.balance.influx_loader import SUMMED_ROLES
from app.intervals.models import IntervalEnergy
from app.registry.models import SUBMETER_ROLES, Park, Role
from app.storage.embedded import EmbeddedStorage

_NS_PER_MIN = 60_000_000_000


async def series_match_registry(storage: EmbeddedStorage, park: Park) -> bool:
    for device, role in await storage.interval_series(park.id):
        dev = park.device(device)
        if dev is None or dev.role.value != role:
            return False
    return True


async def aggregated_totals(
    storage: EmbeddedStorage, park: Park, start_ns: int, end_ns: int
) -> list[IntervalTotals]:
    sums = await storage.interval_role_sums(
        park.id, start_ns, end_ns, roles=[r.value for r in SUMMED_ROLES]
    )
    others = [d for d in park.devices if d.role not in SUMMED_ROLES]
    rows = await asyncio.gather(
        *(storage.intervals(park.id, start_ns, end_ns, d.id) for d in others)
    )
    special: list[IntervalEnergy] = [r for chunk in rows for r in chunk]
    by_start = {t.start_ns: t for t in interval_totals(special, park)}
    length_ns = park.interval_minutes * _NS_PER_MIN
    for s in sums:
        t = by_start.get(s.start_ns)
        if t is None:
            t = by_start[s.start_ns] = IntervalTotals(s.start_ns, s.start_ns + length_ns)
        role = Role(s.role)
        if role in SUBMETER_ROLES:
            t.submeter_kwh[role.value] = (
                t.submeter_kwh.get(role.value, 0.0) + s.sums["energy_import_kwh"]
            )
            continue
        t.estimated += s.estimated
        t.measured += s.rows - s.estimated
        if role is Role.GRID:
            t.grid_import_kwh += s.sums["energy_import_kwh"]
            t.grid_export_kwh += s.sums["energy_export_kwh"]
        elif role is Role.GREEN_DIRECT:
            t.green_direct_kwh += s.sums["energy_import_kwh"]
        else:
            t.renewable_kwh += s.sums["energy_kwh"]
    return [by_start[k] for k in sorted(by_start)]
