"""Ground truth: the energy each device's meter registered per park-local interval."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

NS = 1_000_000_000
#: Counters are kept in milli-units (0.001 kWh, m³, kg, GJ), the simulated meters' resolution.
MILLI = 1000

TRUTH_FIELDS = (
    "park",
    "device",
    "role",
    "counter",
    "interval_start",
    "interval_end",
    "start_ns",
    "end_ns",
    "amount",
)


def local_interval(t_ns: int, tz: ZoneInfo, minutes: int) -> tuple[int, int]:
    """`[start_ns, end_ns)` of the local wall-clock interval containing `t_ns`.

    Written independently of the collector's alignment on purpose: the truth must not share
    code with the thing it checks. Zones with DST are handled except within the one interval
    that contains an offset change (no such change in China).
    """
    sec = t_ns // NS
    off = datetime.fromtimestamp(sec, tz).utcoffset() or timedelta(0)
    off_ns = int(off.total_seconds()) * NS
    step = minutes * 60 * NS
    start = t_ns - (t_ns + off_ns) % step
    return start, start + step


class TruthAccumulator:
    """Sums, per (park, device, counter, interval), the register increments of the meters.

    Amounts are integers in milli-units, so the truth equals the sum of the published counter
    deltas exactly (no float drift); `rows()` converts back to the counter's unit.
    """

    def __init__(self) -> None:
        self._milli: dict[tuple[str, str, str, int, int], int] = defaultdict(int)
        self._roles: dict[tuple[str, str], str] = {}
        self._zones: dict[str, ZoneInfo] = {}

    def set_park(self, park: str, tz: ZoneInfo, roles: dict[str, str]) -> None:
        self._zones[park] = tz
        for device, role in roles.items():
            self._roles[(park, device)] = role

    def add(
        self, park: str, device: str, counter: str, start_ns: int, end_ns: int, milli: int
    ) -> None:
        self._milli[(park, device, counter, start_ns, end_ns)] += milli

    def amount(self, park: str, device: str, counter: str, start_ns: int) -> float:
        """Energy (counter unit) of one interval; 0 when nothing was registered."""
        for (p, d, c, s, _e), v in self._milli.items():
            if (p, d, c, s) == (park, device, counter, start_ns):
                return v / MILLI
        return 0.0

    def by_interval(self) -> dict[tuple[str, str, str, int], float]:
        """`{(park, device, counter, start_ns): amount}` in the counter's unit."""
        return {(p, d, c, s): v / MILLI for (p, d, c, s, _e), v in self._milli.items()}

    def totals(self) -> dict[tuple[str, str, str], float]:
        """`{(park, device, counter): amount over the whole run}`."""
        out: dict[tuple[str, str, str], int] = defaultdict(int)
        for (p, d, c, _s, _e), v in self._milli.items():
            out[(p, d, c)] += v
        return {k: v / MILLI for k, v in out.items()}

    def rows(self) -> list[dict[str, str | int | float]]:
        rows: list[dict[str, str | int | float]] = []
        for (p, d, c, s, e), v in sorted(self._milli.items(), key=lambda kv: kv[0]):
            tz = self._zones.get(p, ZoneInfo("UTC"))
            rows.append(
                {
                    "park": p,
                    "device": d,
                    "role": self._roles.get((p, d), ""),
                    "counter": c,
                    "interval_start": datetime.fromtimestamp(s // NS, tz).isoformat(),
                    "interval_end": datetime.fromtimestamp(e // NS, tz).isoformat(),
                    "start_ns": s,
                    "end_ns": e,
                    "amount": v / MILLI,
                }
            )
        return rows

    def write(self, path: Path) -> None:
        """CSV, or JSON (`{"intervals": [...]}`) when the file name ends in `.json`."""
        rows = self.rows()
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps({"intervals": rows}, ensure_ascii=False, indent=1))
            return
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=TRUTH_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
