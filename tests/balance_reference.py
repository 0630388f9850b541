"""The test oracle for `/balance`: a cache-less recomputation straight from stored rows.

No chain, no day cache, no per-role sums: every raw interval row from the chain's epoch to the
end of the window, read row by row, through the pure accounting core in one pass.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from app.accounting import Certificate, FactorSet, Offset, compute_balance
from app.accounting.buckets import Every
from app.balance.cache import day_start_ns
from app.balance.service import DEFAULT_EPOCH
from app.intervals.models import IntervalEnergy
from app.registry.models import Park
from app.storage.base import Storage
from app.timeutil import to_ns

#: the fields every bucket and total carries that are plain numbers
NUMBER_FIELDS = (
    "consumption_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "renewable_kwh",
    "green_direct_kwh",
    "green_physical_kwh",
    "green_market_kwh",
    "scope1_kg",
    "scope2_location_kg",
    "scope2_market_kg",
    "heat_purchased_kg",
    "offsets_kg",
    "net_kg",
    "energy_tce",
    "completeness",
)


async def stored_rows(storage: Storage, park: Park, end: datetime) -> list[IntervalEnergy]:
    """Every raw interval row of `park` from the epoch to `end`, read row by row."""
    return await storage.intervals(park.id, day_start_ns(DEFAULT_EPOCH, park), to_ns(end))


def recompute(
    rows: list[IntervalEnergy],
    park: Park,
    certificates: list[Certificate],
    offsets: list[Offset],
    fs: FactorSet,
    start: datetime,
    end: datetime,
    every: Every,
    epoch: date = DEFAULT_EPOCH,
) -> dict[str, Any]:
    """`/balance`'s JSON body as a fresh one-pass recomputation over `rows` (all stored rows
    from the epoch on, see `stored_rows`) would give it."""
    assert to_ns(start) >= day_start_ns(epoch, park), "the oracle covers windows from the epoch"
    end_ns = to_ns(end)
    rows = [r for r in rows if r.start_ns < end_ns]
    return compute_balance(park, rows, certificates, offsets, fs, start, end, every).as_dict()


def mismatches(got: dict[str, Any], want: dict[str, Any], rel: float = 1e-9) -> list[str]:
    """Differences between two `/balance` bodies beyond `rel` (abs 1e-9 near zero)."""
    out: list[str] = []
    pairs = [("total", got["total"], want["total"])]
    if len(got["buckets"]) != len(want["buckets"]):
        return [f"{len(got['buckets'])} buckets, want {len(want['buckets'])}"]
    pairs += [
        (f"bucket {b['start']}", b, w) for b, w in zip(got["buckets"], want["buckets"], strict=True)
    ]
    for where, g, w in pairs:
        for name in NUMBER_FIELDS:
            x, y = g[name], w[name]
            if x is None or y is None:
                if x is not y:
                    out.append(f"{where} {name}: {x} != {y}")
                continue
            if abs(x - y) > max(1e-9, rel * max(abs(x), abs(y))):
                out.append(f"{where} {name}: {x} != {y}")
    return out
