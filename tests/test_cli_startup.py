"""What `lingtan collect` loads at start-up: none of the other commands' heavy modules."""

from __future__ import annotations

import subprocess
import sys

from lingtan.cli import SERVICES, build_parser

#: modules only other commands need: the Grafana client and its HTTP stack, the simulator
NOT_FOR_COLLECT = ("grafana_client", "niquests", "simulator", "app.dashboards.push")


def test_collect_starts_without_other_commands_modules() -> None:
    probe = (
        "import sys\n"
        "from lingtan.cli import main, build_parser\n"
        "build_parser(services_only=True).parse_args(['collect', '--workers', '2'])\n"
        "import collectors.service\n"
        f"print(sorted(m for m in {NOT_FOR_COLLECT!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_full_parser_still_loads_them() -> None:
    """Control for the test above: the full command line does import the simulator."""
    probe = (
        "import sys\n"
        "from lingtan.cli import build_parser\n"
        "build_parser()\n"
        "print('simulator' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "True"


def test_services_parse_the_same_either_way() -> None:
    for command in SERVICES:
        argv = [command, "--parks", "p.yaml", "--data-dir", "d"]
        if command == "collect":
            argv += ["--workers", "3", "--client-id", "c"]
        full = vars(build_parser().parse_args(argv))
        assert vars(build_parser(services_only=True).parse_args(argv)) == full
