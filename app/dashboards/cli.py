"""`lingtan dashboards push` (wired into `lingtan.cli` by `register`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from app.config import load_settings

DEFAULT_GRAFANA_URL = "http://127.0.0.1:3000"
#: the compose service name: the URL as Grafana (not this machine) reaches InfluxDB
DEFAULT_INFLUX_URL = "http://influxdb:8086"


def register(subparsers: Any) -> None:
    """Add `dashboards push` to the `lingtan` subparsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    dash = subparsers.add_parser(
        "dashboards",
        help="Grafana: push the dashboards and the InfluxDB datasource",
        description="Grafana dashboards of Lingtan (JSON in ./dashboards).",
        formatter_class=fmt,
    )
    dash.set_defaults(func=lambda _args: _print_help(dash))
    sub = dash.add_subparsers(dest="dashboards_command", metavar="SUBCOMMAND")
    p = sub.add_parser(
        "push",
        help="create or update the datasource, the Lingtan folder and every dashboard",
        description=(
            "Upsert the InfluxDB datasource (uid lingtan-influx), the folder 'Lingtan' and\n"
            "every dashboard JSON into a running Grafana. Idempotent: run it again after\n"
            "changing a dashboard. Docker-compose provisions the same from files instead."
        ),
        epilog=(
            "example:\n"
            "  lingtan dashboards push --grafana-url http://127.0.0.1:3000 --token glsa_… \\\n"
            "      --influx-url http://influxdb:8086 --influx-db lingtan\n\n"
            "--influx-url is the address Grafana uses to reach InfluxDB (default\n"
            f"$LINGTAN_INFLUX_URL, else {DEFAULT_INFLUX_URL}). The datasource gets\n"
            "LINGTAN_INFLUX_TOKEN or LINGTAN_INFLUX_USER/LINGTAN_INFLUX_PASSWORD when set."
        ),
        formatter_class=fmt,
    )
    p.add_argument(
        "--grafana-url",
        default=os.environ.get("GRAFANA_URL", DEFAULT_GRAFANA_URL),
        help="Grafana base URL; user:pass@ in it means basic auth (default $GRAFANA_URL)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("GRAFANA_TOKEN"),
        help="Grafana service-account token (default $GRAFANA_TOKEN)",
    )
    p.add_argument("--influx-url", help="InfluxDB URL as Grafana reaches it")
    p.add_argument("--influx-db", help="database (default $LINGTAN_INFLUX_DB or lingtan)")
    p.add_argument("--dir", type=Path, help="dashboard JSON directory (default ./dashboards)")
    p.set_defaults(func=_run_push)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _run_push(args: argparse.Namespace) -> int:
    from grafana_client.client import GrafanaException

    from app.dashboards.push import push

    settings = load_settings()
    token = settings.influx_token.get_secret_value() if settings.influx_token else None
    password = settings.influx_password.get_secret_value() if settings.influx_password else None
    try:
        result = push(
            args.grafana_url,
            args.token,
            args.influx_url or settings.influx_url or DEFAULT_INFLUX_URL,
            args.influx_db or settings.influx_db,
            args.dir,
            influx_token=token,
            influx_username=settings.influx_user,
            influx_password=password,
        )
    except (GrafanaException, OSError, ValueError) as exc:
        print(f"lingtan dashboards push: {exc}", file=sys.stderr)
        return 1
    print(f"datasource lingtan-influx {result.datasource}; folder Lingtan {result.folder}")
    for uid in result.dashboards:
        print(f"dashboard {uid} pushed")
    return 0
