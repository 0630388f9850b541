"""Benchmark of pricing in `compute_balance`: a month of 15-min intervals with and without a tariff.

Baseline in the same run: the same park and intervals without a tariff. Beside it: the
shipped Liaoning example tariff (`examples/parks.yaml`). Figures are CPU time
(`time.process_time`), best of `--rounds`.

    .venv/bin/python bench/cost.py --days 31 --rounds 5
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from pathlib import Path

from app.accounting import CN_2023, compute_balance
from app.accounting.buckets import to_ns
from app.accounting.totals import IntervalTotals
from app.registry import load_registry
from app.registry.models import Park

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "parks.yaml"
Q = 900 * 1_000_000_000


def _totals(park: Park, start: datetime, days: int) -> list[IntervalTotals]:
    s0 = to_ns(start)
    out = []
    for k in range(days * 96):
        h = (k // 4) % 24
        pv = max(0.0, 400.0 - 40.0 * abs(h - 12))
        out.append(
            IntervalTotals(
                s0 + k * Q,
                s0 + (k + 1) * Q,
                grid_import_kwh=max(0.0, 300.0 - pv),
                grid_export_kwh=max(0.0, pv - 300.0),
                renewable_kwh=pv,
                storage={"bess-1": (50.0 if h < 6 else 0.0, 45.0 if 18 <= h < 22 else 0.0)},
                fuel={("natural_gas", "gas_m3"): 10.0},
                heat_purchased_gj=0.5,
                measured=9,
            )
        )
    return out


def _best(
    park: Park,
    totals: list[IntervalTotals],
    start: datetime,
    end: datetime,
    rounds: int,
    every: str,
) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        compute_balance(park, totals, [], [], CN_2023, start, end, every)  # type: ignore[arg-type]
        best = min(best, time.process_time() - t0)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    priced = load_registry(EXAMPLES).park("shenfu-demo")
    assert priced is not None and priced.tariff is not None
    plain = Park.model_validate({**priced.model_dump(), "tariff": None})
    start = datetime(2026, 7, 1, tzinfo=priced.tz)
    end = start + timedelta(days=args.days)
    totals = _totals(priced, start, args.days)
    print(f"{args.days} days × 96 intervals, best of {args.rounds} (CPU ms)")
    for every in ("1d", "1h"):
        base = _best(plain, totals, start, end, args.rounds, every)
        cost = _best(priced, totals, start, end, args.rounds, every)
        print(f"every={every}: no tariff {base:8.1f}   tariff {cost:8.1f}   ×{cost / base:.2f}")


if __name__ == "__main__":
    main()
