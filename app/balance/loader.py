"""Interval totals of a park from storage: summed per role by the store where rows allow it."""

from __future__ import annotations

import asyncio

from app.accounting import IntervalTotals, interval_totals
from app.accounting.totals import add_row_quality
from app.intervals.models import IntervalEnergy
from app.registry.models import SUBMETER_ROLES, Park, Role
from app.storage.base import RoleSums, Storage

#: roles whose interval amounts only ever enter the balance as a per-role sum
SUMMED_ROLES: tuple[Role, ...] = (
    Role.GRID,
    Role.PV,
    Role.WIND,
    Role.GREEN_DIRECT,
    *sorted(SUBMETER_ROLES),
)
# Each group of roles is summed with just the fields it has (see Storage.interval_role_sums).
_GROUPS: tuple[tuple[tuple[Role, ...], tuple[str, ...]], ...] = (
    ((Role.GRID,), ("energy_import_kwh", "energy_export_kwh")),
    ((Role.PV, Role.WIND), ("energy_kwh",)),
    ((Role.GREEN_DIRECT, *sorted(SUBMETER_ROLES)), ("energy_import_kwh",)),
)
_NS_PER_MIN = 60_000_000_000


async def series_match_registry(storage: Storage, park: Park) -> bool:
    """True when every interval series of `park` is a registry device under its registry role.

    Only then can rows be summed by their stored role (the registry's role is authoritative;
    a device whose role changed, or one not in the registry, needs the row-by-row path).
    """
    for device, role in await storage.interval_series(park.id):
        dev = park.device(device)
        if dev is None or dev.role.value != role:
            return False
    return True


def _add(t: IntervalTotals, s: RoleSums, estimated: int) -> None:
    role = Role(s.role)
    if role in SUBMETER_ROLES:
        t.submeter_kwh[role.value] = (
            t.submeter_kwh.get(role.value, 0.0) + s.sums["energy_import_kwh"]
        )
        return
    t.estimated += estimated
    t.measured += s.rows - estimated
    if role is Role.GRID:
        t.grid_import_kwh += s.sums["energy_import_kwh"]
        t.grid_export_kwh += s.sums["energy_export_kwh"]
    elif role is Role.GREEN_DIRECT:
        t.green_direct_kwh += s.sums["energy_import_kwh"]
    else:
        t.renewable_kwh += s.sums["energy_kwh"]


async def aggregated_totals(
    storage: Storage, park: Park, start_ns: int, end_ns: int
) -> list[IntervalTotals]:
    """`interval_totals` of [start_ns, end_ns), with the summable roles summed by the store.

    Storage, fuel, heat and hydrogen devices (per-device state or per-fuel factors) are read
    row by row; grid, pv, wind, green-direct and sub-meters come back as one row per interval
    and role, which is what makes a cold year of a 1,000-meter park affordable. Callers check
    `series_match_registry` first.
    """
    interval_ns = park.interval_minutes * _NS_PER_MIN
    sums = await asyncio.gather(
        *(
            storage.interval_role_sums(
                park.id,
                start_ns,
                end_ns,
                [r.value for r in roles],
                interval_ns=interval_ns,
                fields=fields,
                # counted from the flagged rows below: one scan fewer per group on influxd
                estimated=False,
            )
            for roles, fields in _GROUPS
        )
    )
    others = [d for d in park.devices if d.role not in SUMMED_ROLES]
    rows = await asyncio.gather(
        *(storage.intervals(park.id, start_ns, end_ns, d.id) for d in others)
    )
    balance_roles = [r.value for r in (Role.GRID, Role.PV, Role.WIND, Role.GREEN_DIRECT)]
    flagged = await storage.flagged_intervals(park.id, start_ns, end_ns, balance_roles)
    special: list[IntervalEnergy] = [r for chunk in rows for r in chunk]
    by_start = {t.start_ns: t for t in interval_totals(special, park)}
    # estimated rows of each interval and role, from the flagged rows (they include them)
    est_rows: dict[tuple[int, str], int] = {}
    for start_ns, device, is_estimated, _flags in flagged:
        dev = park.device(device)
        if is_estimated and dev is not None:
            key = (start_ns, dev.role.value)
            est_rows[key] = est_rows.get(key, 0) + 1
    for group in sums:
        for s in group:
            t = by_start.get(s.start_ns)
            if t is None:
                t = by_start[s.start_ns] = IntervalTotals(s.start_ns, s.start_ns + interval_ns)
            _add(t, s, est_rows.get((s.start_ns, s.role), 0))
    # what stands behind the summed rows: the few estimated or flagged ones, read apart
    for start_ns, device, estimated, flags in flagged:
        t = by_start.get(start_ns)
        if t is not None:
            add_row_quality(t, device, estimated, flags)
    return [by_start[k] for k in sorted(by_start)]
