"""What `lingtan collect` loads at start-up: none of the other commands' heavy modules."""

from __future__ import annotations

import ast
import subprocess
import sys

from lingtan.cli import SERVICES, build_parser

#: modules only other commands need: the Grafana client and its HTTP stack, the simulator
NOT_FOR_COLLECT = ("grafana_client", "niquests", "simulator", "app.dashboards.push")
#: what the collector must not load before its first batch (docs/performance.md, "Collector
#: start-up"): the ledger store's SQL stack (opened later, in the background, when the
#: registry can be read without it), the API, the balance and its rollup builder (imported
#: when the first rollup pass is due), other gateway formats' decoders (when configured)
NOT_BEFORE_FIRST_BATCH = (
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "app.balance",
    "app.ledgers",
    "app.accounting",
    "app.main",
)


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


def _loaded_by_collect_start(watch: tuple[str, ...]) -> list[str]:
    """Which of `watch` the real entry point's import chain loads: `python -m lingtan collect`
    as far as its parser, then the collector service it runs."""
    probe = (
        "import sys\n"
        "from lingtan.cli import build_parser\n"
        "build_parser(services_only=True).parse_args(['collect'])\n"
        "import lingtan.workers, collectors.service\n"
        f"print(sorted(m for m in {watch!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return list(ast.literal_eval(out))


def test_collect_starts_without_the_sql_api_and_balance_stacks() -> None:
    assert _loaded_by_collect_start(NOT_BEFORE_FIRST_BATCH) == []


def test_the_probe_sees_what_the_collector_does_load() -> None:
    """Control for the test above: the probe reports modules the collector needs."""
    assert _loaded_by_collect_start(("gmqtt", "pydantic", "app.storage.spool")) == [
        "app.storage.spool",
        "gmqtt",
        "pydantic",
    ]


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


def _probe(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_http_client_is_imported_without_its_unused_optional_imports() -> None:
    shown = "print(sorted(m for m in ('rich', 'click', 'trio') if m in sys.modules))"
    # control: installed here (uvicorn and typer need rich and click, the dev tools trio),
    # plain imports load them
    assert _probe(f"import httpx, httpcore\n{shown}") == "['click', 'rich', 'trio']"
    assert _probe(
        "from lingtan.cli import import_http_client\n"
        "import_http_client()\n"
        f"{shown}\n"
        "import httpx, httpx._main, trio\n"  # still importable on purpose afterwards
        "print(httpx.AsyncClient.__name__, callable(httpx._main.main))"
    ) == ("[]\nAsyncClient True")
