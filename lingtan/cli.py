"""The `lingtan` console script: the composition root that wires `app` and `collectors` together."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.config import Settings, load_settings
from app.registry import RegistryError
from lingtan.ports import PortInUse

EPILOG = """\
Configuration comes from LINGTAN_* environment variables (see README), then .env /
lingtan.toml in the working directory; command-line flags win over both.
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--parks", type=Path, help="park registry YAML (LINGTAN_PARKS)")
    p.add_argument("--data-dir", type=Path, help="spool and embedded store (LINGTAN_DATA_DIR)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (LINGTAN_LOG_LEVEL)")
    p.add_argument(
        "--db-url",
        help="ledger store (keys, ledgers, audit log, registry versions), SQLAlchemy URL"
        " (LINGTAN_DB_URL; default SQLite in the data dir). Give collect and api the same one:"
        " registry edits made through the API reach the collector through it",
    )
    p.add_argument(
        "--registry-poll-s",
        type=float,
        help="how often to look for registry edits (LINGTAN_REGISTRY_POLL_S, default 5)",
    )


def _influx(p: argparse.ArgumentParser) -> None:
    p.add_argument("--influx-url", help="InfluxDB URL, e.g. http://127.0.0.1:8086")
    p.add_argument("--influx-db", help="database name (default lingtan)")


#: the long-running commands: defined here, they need none of the other commands' modules
SERVICES = ("collect", "api", "up")


def build_parser(*, services_only: bool = False) -> argparse.ArgumentParser:
    """The whole command line; `services_only` leaves out the commands registered by other
    packages (gateways, simulate, dashboards, keys, ledgers, rollups), which a service's start
    does not need to import (docs/performance.md, "Collector start-up")."""
    parser = argparse.ArgumentParser(
        prog="lingtan",
        description="Lingtan (零碳): energy and carbon monitoring for zero-carbon parks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    collect = sub.add_parser(
        "collect",
        help="MQTT collector: subscribe, validate, derive interval energies, store",
        description=(
            "Subscribe to lingtan/v1/+/+/telemetry (QoS 1, persistent session), validate each"
            " payload, dead-letter what is invalid, derive 15-min interval energies and write"
            " everything to InfluxDB. A message is acknowledged only once written or spooled"
            " to disk, so nothing accepted is lost if InfluxDB or this process goes down."
        ),
        epilog="example:\n  lingtan collect --mqtt-url mqtt://127.0.0.1:1883 "
        "--influx-url http://127.0.0.1:8086 --parks examples/parks.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(collect)
    collect.add_argument("--mqtt-url", help="broker, e.g. mqtt://user:pass@127.0.0.1:1883")
    _influx(collect)
    collect.add_argument("--client-id", help="stable MQTT client id (persistent session)")
    collect.add_argument(
        "--share-group", help="MQTT shared subscription group, to split load across collectors"
    )
    collect.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0 = off)")
    collect.add_argument("--batch-max-readings", type=int, help="flush after this many readings")
    collect.add_argument("--batch-max-wait-ms", type=int, help="or after this many ms")
    collect.add_argument("--spool-max-mb", type=float, help="spool bound before backpressure")
    collect.add_argument(
        "--workers",
        dest="collect_workers",
        type=int,
        help="collector processes sharing the load on one MQTT shared subscription"
        " (LINGTAN_COLLECT_WORKERS, default 1): client ids <id>-1.., share group"
        " --share-group or else the client id, metrics on consecutive ports",
    )
    collect.add_argument("--worker-index", dest="collect_worker", type=int, help=argparse.SUPPRESS)

    api = sub.add_parser(
        "api",
        help="HTTP API: live balance, history, ledgers, exports (FastAPI, docs at /docs)",
        description=(
            "Serve the HTTP API (docs/api.md) on LINGTAN_API_PORT. History comes from storage;"
            " /live is kept in memory from the MQTT telemetry when a broker is configured."
        ),
        epilog="example:\n  lingtan api --parks examples/parks.yaml --influx-url "
        "http://127.0.0.1:8086 --mqtt-url mqtt://127.0.0.1:1883",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(api)
    _influx(api)
    api.add_argument("--mqtt-url", help="broker for the live view")
    api.add_argument("--api-port", type=int, help="port (default 8000)")
    api.add_argument("--api-host", help="address to bind (default 127.0.0.1)")

    up = sub.add_parser(
        "up",
        help="everything on one machine: broker, collector and API in one process",
        description=(
            "Run collector + API (+ built-in page) in one process. Broker: LINGTAN_MQTT_URL if"
            " set, else the machine's mosquitto (started here), else an embedded amqtt broker"
            " (MQTT 3.1.1, about 3k msgs/s: fine for a demo or a small park). Storage:"
            " LINGTAN_INFLUX_URL if set, else an embedded SQLite store in LINGTAN_DATA_DIR."
        ),
        epilog="example:\n  lingtan up --demo      # a simulated park, live within seconds",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(up)
    _influx(up)
    up.add_argument("--mqtt-url", help="use this broker instead of starting one")
    up.add_argument("--api-port", type=int, help="port (default 8000)")
    up.add_argument("--api-host", help="address to bind (default 127.0.0.1)")
    up.add_argument(
        "--demo", action="store_true", help="also simulate the demo park (or every park given)"
    )

    if services_only:
        return parser
    from app.balance.cli import register as register_rollups
    from app.dashboards.cli import register as register_dashboards
    from app.ledgers.cli import register as register_keys_audit
    from app.ledgers.cli_entries import register as register_ledger_entries
    from app.storage.cli import register as register_storage
    from collectors.gateways.cli import register as register_gateways
    from simulator.cli import register as register_simulate

    register_simulate(sub)
    register_gateways(sub)
    register_dashboards(sub)
    register_keys_audit(sub)
    register_ledger_entries(sub)
    register_rollups(sub)
    register_storage(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    fields = set(Settings.model_fields)
    overrides = {k: v for k, v in vars(args).items() if k in fields}
    return load_settings(**overrides)


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run on uvloop where it is installed (~10 % more ingest throughput)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, or installed without it
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


#: Optional imports of InfluxDB's HTTP client that no lingtan process uses: httpx's command
#: line (rich and click, installed for uvicorn and typer: more than half of httpx's import)
#: and httpcore's trio support (we run on asyncio; trio comes with the dev tools).
UNUSED_OPTIONAL_IMPORTS = ("httpx._main", "trio")


def import_http_client() -> None:
    """Import httpx and httpcore without `UNUSED_OPTIONAL_IMPORTS` (docs/performance.md,
    "Collector start-up"): each is imported in a try/except ImportError there, which None in
    sys.modules makes fail as if it were not installed. Unblocked again afterwards."""
    if "httpx" in sys.modules or "httpcore" in sys.modules:
        return
    blocked = [m for m in UNUSED_OPTIONAL_IMPORTS if m not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import httpcore
        import httpx
    except ImportError:  # a version where one of them is not optional: import them whole
        _unblock(blocked)
        import httpcore  # noqa: F401
        import httpx  # noqa: F401
    finally:
        _unblock(blocked)


def _unblock(names: list[str]) -> None:
    for name in names:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    services_only = bool(argv) and argv[0] in SERVICES
    args = build_parser(services_only=services_only).parse_args(argv)
    if getattr(args, "func", None) is not None:
        # self-contained commands (gateways, simulate) bring their own runner
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = run_async(result)
        return int(result)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"lingtan: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    worker = f" worker-{settings.collect_worker}" if settings.collect_worker else ""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s{worker} %(name)s: %(message)s",
    )
    # one line per HTTP request / MQTT packet drowns what matters; keep their warnings
    for noisy in ("httpx", "gmqtt", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))
    if settings.influx_url:
        import_http_client()
    try:
        if args.command == "collect" and not settings.collect_worker:
            from lingtan.workers import run_workers, warn_orphaned_spools

            warn_orphaned_spools(settings)
            if settings.collect_workers > 1:
                return run_workers(settings, argv)
        if args.command == "collect":
            from collectors.service import run_collect

            run_async(run_collect(settings))
        elif args.command == "api":
            from lingtan.runtime import run_api

            run_async(run_api(settings))
        elif args.command == "up":
            from lingtan.runtime import run_up

            run_async(run_up(settings, demo=args.demo))
    except (RegistryError, ValueError, PortInUse) as exc:
        print(f"lingtan: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
