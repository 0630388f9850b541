"""Benchmark of `LiveState`: apply and render cost per reading kind, CPU time, one process.

Baseline in the same run: readings carrying `power_kw` only. Beside it: power + one counter
(what most meters send) and heat meters with two counters and no power (their rates and
per-quantity cadences are tracked). Figures are CPU time (`time.process_time`), best of
`--rounds`, so other load on the machine moves them less.

    .venv/bin/python bench/live_state.py --devices 5000 --rounds 20
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from app.live.state import LiveState
from app.registry import parse_registry
from app.registry.models import Registry
from app.telemetry.models import Reading

S = 1_000_000_000
T0 = 1_780_000_000 * S


def _registry(n: int, role: str) -> Registry:
    extra = ", included_in: g" if role == "load" else ""
    extra += ", fuel: natural_gas" if role == "heat_fuel" else ""
    devices = "".join(f"      - {{id: d{i}, role: {role}{extra}}}\n" for i in range(n))
    return parse_registry(
        f"parks:\n  - id: big\n    devices:\n      - {{id: g, role: grid}}\n{devices}"
    )


def _run(
    n: int, rounds: int, role: str, values: Callable[[int], dict[str, float]]
) -> tuple[float, float]:
    """Best apply time per reading (µs) and best render time (ms) over `rounds` minutes."""
    clock = [T0]
    live = LiveState(_registry(n, role), clock=lambda: clock[0], min_render_interval_s=0.0)
    ids = [f"d{i}" for i in range(n)]
    best_apply = best_render = float("inf")
    for k in range(rounds):
        ts = T0 + k * 60 * S
        batch = [Reading("big", d, ts, values(k)) for d in ids]
        t = time.process_time()
        live.apply(batch)
        best_apply = min(best_apply, time.process_time() - t)
        clock[0] = ts + S
        t = time.process_time()
        live.document_json("big")
        best_render = min(best_render, time.process_time() - t)
    return best_apply / n * 1e6, best_render * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    kinds: list[tuple[str, str, Callable[[int], dict[str, float]]]] = [
        ("power_kw only (baseline)", "load", lambda k: {"power_kw": 1.0}),
        (
            "power_kw + 1 counter",
            "load",
            lambda k: {"power_kw": 1.0, "energy_import_kwh": 100.0 + k},
        ),
        (
            "heat meter: 2 counters, no kW",
            "heat_fuel",
            lambda k: {"gas_m3": 500.0 + 1.5 * k, "heat_kwh": 1e4 + 13.8 * k},
        ),
    ]
    print(f"LiveState, {args.devices} devices, best of {args.rounds} rounds (CPU time)")
    base_apply = base_render = 0.0
    for label, role, values in kinds:
        apply_us, render_ms = _run(args.devices, args.rounds, role, values)
        if not base_apply:
            base_apply, base_render = apply_us, render_ms
        print(
            f"  {label:32s} apply {apply_us:6.2f} µs/reading ({apply_us / base_apply:4.1f}×)"
            f"   render {render_ms:6.2f} ms ({render_ms / base_render:4.1f}×)"
        )


if __name__ == "__main__":
    main()
