"""`lingtan rollups` (wired into `lingtan.cli` by `register`): build the store's day rollups."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from app.config import load_settings

EXAMPLES = """\
examples:
  lingtan rollups                      # every park: days whose rollup is missing or stale
  lingtan rollups --park demo --all    # recompute every day of one park

The collector keeps rollups current by itself (LINGTAN_ROLLUP_INTERVAL_S); run this once
after an upgrade or a bulk import, so the first /balance of a year is fast everywhere.
Reads LINGTAN_INFLUX_URL (else the embedded store in LINGTAN_DATA_DIR), LINGTAN_PARKS and
LINGTAN_DB_URL (registry edits made through the API) like `lingtan api`.
"""


def register(subparsers: Any) -> None:
    """Add `rollups` to the `lingtan` subparsers."""
    p = subparsers.add_parser(
        "rollups",
        help="build the day rollups that make a cold /balance of a year fast",
        description=(
            "Compute each park's day rollups (docs/storage.md, 'Day rollups') for every day\n"
            "whose rollup is missing or older than its data, and store them."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--park", action="append", help="only this park (repeatable)")
    p.add_argument(
        "--all", action="store_true", help="recompute every day with data, not only stale ones"
    )
    p.set_defaults(func=_run)


async def _run(args: argparse.Namespace) -> int:
    from app.balance.rollup_builder import RollupBuilder
    from app.ledgers import LedgerStore
    from app.ledgers.registry_store import open_registry
    from app.storage.base import StorageError
    from app.storage.factory import open_storage

    settings = load_settings()
    ledgers = LedgerStore(settings.ledger_url)
    try:
        holder, _watcher = open_registry(ledgers, settings.parks, settings.registry_poll_s)
    finally:
        ledgers.close()
    parks = list(holder.registry.parks)
    if args.park:
        unknown = sorted(set(args.park) - {p.id for p in parks})
        if unknown:
            print(f"lingtan rollups: unknown park(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        parks = [p for p in parks if p.id in set(args.park)]
    storage = await open_storage(settings)
    builder = RollupBuilder(storage, lambda: parks)
    t0 = time.monotonic()

    def progress(park: str, done: int, total: int) -> None:
        print(f"  {park}: {done}/{total} days", flush=True)

    try:
        for park in parks:
            inputs, stale = await builder.stale_days(park)
            days = sorted(inputs.changes) if args.all else stale
            print(f"{park.id}: {len(days)} of {len(inputs.changes)} day(s) to build", flush=True)
            if days:
                await builder.build(park, days, inputs, progress)
    except StorageError as exc:
        print(f"lingtan rollups: storage failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await storage.close()
    print(f"done: {builder.built} day(s) built in {time.monotonic() - t0:.1f} s")
    return 0
