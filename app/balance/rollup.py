"""Day rollups: a park's `IntervalTotals` of one UTC day, encoded for the store and checked.

The balance reads a year as 365 stored rollups instead of every interval row of every device
(docs/storage.md, "Day rollups"). A rollup is a cache that any process may write and every
process checks: it is used only while the day's change marker is the token read *before* the
rows it was computed from, and the park's registry entry is the one it was summed under.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from app.accounting import IntervalTotals
from app.registry.models import Park
from app.storage.base import NS_PER_DAY, DayRollup

#: bumped whenever the encoding or the meaning of `IntervalTotals` changes: older rollups
#: then simply stop matching and are recomputed
ROLLUP_FORMAT = 1


def park_fingerprint(park: Park) -> str:
    """Identity of what a park's totals are summed under (its registry entry, the format)."""
    doc = park.model_dump_json()
    return hashlib.sha256(f"{ROLLUP_FORMAT}:{doc}".encode()).hexdigest()[:32]


def _pairs(d: Mapping[str, Any]) -> list[Any]:
    return [[k, v] for k, v in d.items()]


def _row(t: IntervalTotals, day_ns: int) -> list[Any]:
    # Positional and offset from the day's start: a day of 96 intervals is a few KiB zipped.
    return [
        t.start_ns - day_ns,
        t.end_ns - t.start_ns,
        t.grid_import_kwh,
        t.grid_export_kwh,
        t.renewable_kwh,
        t.green_direct_kwh,
        [[k, c, d] for k, (c, d) in t.storage.items()],
        _pairs(t.storage_soc_pct),
        [[f, c, q] for (f, c), q in t.fuel.items()],
        t.heat_purchased_gj,
        t.heat_recovered_gj,
        t.heat_fuel_output_kwh,
        _pairs(t.hydrogen_kg),
        _pairs(t.submeter_kwh),
        t.measured,
        t.estimated,
        list(t.flags),
        [[k, list(v)] for k, v in t.quality.items()],
    ]


def encode_day(totals: Iterable[IntervalTotals], day: int) -> bytes:
    """The payload of UTC day `day`'s totals (each must start inside that day)."""
    day_ns = day * NS_PER_DAY
    rows = [_row(t, day_ns) for t in totals]
    # repr-exact floats (json uses repr), so a decoded day equals the computed one bit for bit
    return zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 1)


def decode_day(payload: bytes, day: int) -> list[IntervalTotals]:
    """The totals encoded by `encode_day` for `day`, in their stored (time) order."""
    day_ns = day * NS_PER_DAY
    out: list[IntervalTotals] = []
    for r in json.loads(zlib.decompress(payload)):
        start = day_ns + r[0]
        out.append(
            IntervalTotals(
                start,
                start + r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                {k: (c, d) for k, c, d in r[6]},
                {k: v for k, v in r[7]},
                {(f, c): q for f, c, q in r[8]},
                r[9],
                r[10],
                r[11],
                {k: v for k, v in r[12]},
                {k: v for k, v in r[13]},
                r[14],
                r[15],
                tuple(r[16]),
                {k: tuple(v) for k, v in r[17]},
            )
        )
    return out


#: the `kind` of the store's day rollups that hold interval totals of UTC days
TOTALS = "totals"


def totals_stamp(token: int, fingerprint: str) -> str:
    """The stamp of a day's totals summed after reading marker `token`, under `fingerprint`."""
    return f"{token}:{fingerprint}"


def usable(rollup: DayRollup | None, token: int | None, fingerprint: str) -> bool:
    """True when `rollup` was computed from exactly the data behind marker `token` (as far as
    any reader can know: a later write moves the marker) under `fingerprint`."""
    return (
        rollup is not None
        and token is not None
        and rollup.stamp == totals_stamp(token, fingerprint)
    )


def split_by_day(totals: Iterable[IntervalTotals]) -> dict[int, list[IntervalTotals]]:
    """`totals` grouped by the UTC day of their start."""
    out: dict[int, list[IntervalTotals]] = {}
    for t in totals:
        out.setdefault(t.start_ns // NS_PER_DAY, []).append(t)
    return out
