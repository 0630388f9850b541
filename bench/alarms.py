"""Alarm engine benchmark: one engine round on a park of N devices (default 5,000).

    .venv/bin/python bench/alarms.py                 # 5,000 devices
    .venv/bin/python bench/alarms.py --devices 500

The engine runs every 5 s in each API process, on the event loop. Measured: a full round
(`AlarmEngine.evaluate`: sample + rules + lease + open-alarm read; as leader, nothing to
fire) when a twelfth of the devices have a new reading (60 s meters, 5 s ticks) and when
all have (worst case); the longest event-loop stall meanwhile; a round in which 1 % of the
devices fire at once (each fire is one audited write transaction). Baseline of the same
run: rendering the park's /live document once (`LiveState.document`).
Embedded storage and SQLite ledger in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.alarms.engine import AlarmEngine, EngineOptions
from app.alarms.store import AlarmStore
from app.ledgers import LedgerStore
from app.live.state import LiveState
from app.registry import parse_registry
from app.registry.holder import RegistryHolder
from app.storage.embedded import EmbeddedStorage
from app.telemetry.models import Reading

S = 1_000_000_000


def registry_yaml(n: int) -> str:
    lines = [
        "parks:",
        "  - id: bench",
        "    alarms: {offline_grace_s: 45, dead_letters_per_5min: 0, flagged_interval_share: 0}",
        "    devices:",
        "      - {id: grid-main, role: grid}",
    ]
    lines += [f"      - {{id: m{i}, role: load, included_in: grid-main}}" for i in range(n - 1)]
    return "\n".join(lines)


async def main(n: int, rounds: int) -> None:
    reg = parse_registry(registry_yaml(n))
    clock = [1_780_000_000 * S]
    live = LiveState(reg, clock=lambda: clock[0], min_render_interval_s=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        ledgers = LedgerStore(f"sqlite:///{tmp}/ledger.db")
        storage = EmbeddedStorage(Path(tmp) / "store.sqlite")
        engine = AlarmEngine(
            AlarmStore(ledgers),
            RegistryHolder(reg),
            live,
            storage,
            options=EngineOptions(slow_every_s=1e9),
            clock=lambda: clock[0],
        )
        ids = [d.id for d in reg.parks[0].devices]

        def report_all(t_s: int, skip: set[str] = frozenset()) -> None:  # type: ignore[assignment]
            clock[0] = 1_780_000_000 * S + t_s * S
            live.apply(
                Reading("bench", d, clock[0], {"energy_import_kwh": float(t_s)})
                for d in ids
                if d not in skip
            )

        for t in (0, 60, 120):  # cadence 60 s learned
            report_all(t)
            await engine.evaluate()
        stalls: list[float] = []
        measuring = [False]

        async def ticker() -> None:
            """The longest gap between two 1 ms sleeps while a round runs = loop stall (the
            bench's own live.apply and render are left out)."""
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                if measuring[0]:
                    stalls.append(now - last)
                last = now

        async def round_() -> float:
            await asyncio.sleep(0.002)  # the ticker's clock starts after the bench's own work
            measuring[0] = True
            t0 = time.perf_counter()
            await engine.evaluate()
            took = time.perf_counter() - t0
            measuring[0] = False
            return took

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        every: list[float] = []
        twelfth: list[float] = []
        render: list[float] = []
        t_s = 120
        for k in range(rounds):
            t_s += 60
            report_all(t_s)  # worst case: every device has a new reading
            every.append(await round_())
            # 60 s meters, 5 s ticks: a twelfth of them report between two rounds
            t_s += 5
            report_all(t_s, skip={d for j, d in enumerate(ids) if (j + k) % 12})
            twelfth.append(await round_())
            live._parks["bench"].cache.clear()
            t0 = time.perf_counter()
            live.document("bench")
            render.append(time.perf_counter() - t0)
        tick.cancel()
        stall = max(stalls)
        # 1 % of the devices silent past cadence + grace: they all fire in one round
        silent = set(ids[1 : 1 + n // 100])
        report_all(t_s + 60)
        report_all(t_s + 200, skip=silent)  # 140 s: past any cadence + 45 s
        t0 = time.perf_counter()
        await engine.evaluate()
        firing = time.perf_counter() - t0
        fired = len(engine.view.of("bench"))
        await storage.close()
        ledgers.close()
    print(f"devices: {n}")
    print(f"baseline: /live render      median {1000 * statistics.median(render):8.1f} ms")
    print(f"engine round, 1/12 new       median {1000 * statistics.median(twelfth):8.1f} ms")
    print(f"engine round, all new        median {1000 * statistics.median(every):8.1f} ms")
    print(f"longest event-loop stall            {1000 * stall:8.1f} ms")
    print(
        f"engine round, {fired} alarms fire  {1000 * firing:8.1f} ms "
        f"({1000 * firing / max(1, fired):.1f} ms per audited fire)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("app.alarms").setLevel(logging.ERROR)  # one line per fired alarm
    asyncio.run(main(args.devices, args.rounds))
