"""The import rules of docs/architecture.md: `.ci/run`'s check fails on a forbidden import, and
the packages of `app` form no import cycle beyond an allow-list that can only shrink."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "collectors", "lingtan", "simulator")

#: The acyclic contract's `ignore_imports` may only lose entries: a new upward import must be
#: removed, not added here. Each entry is explained in docs/architecture.md.
ALLOWED_UPWARD_IMPORTS = {
    "app.*.routes -> app.**",
}


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _ci_import_check() -> list[str]:
    """The `lint-imports` command line of .ci/run, with this interpreter's scripts folder."""
    lines = [
        line.split()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.startswith(".venv/bin/lint-imports")
    ]
    assert len(lines) == 1, ".ci/run runs lint-imports exactly once"
    scripts = Path(sys.executable).parent
    return [str(scripts / "lint-imports"), *lines[0][1:]]


def _copy_repo(dest: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            dest / package,
            ignore=shutil.ignore_patterns("__pycache__", "static", "fonts", "*.png", "*.ttf"),
        )
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _run_check(cwd: Path) -> subprocess.CompletedProcess[str]:
    # the copy comes first on the path, before the editable install of the worktree
    env = {"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run(
        _ci_import_check(), cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "app/accounting/buckets.py",
            "import collectors.topics",
            "app never imports the collector, the CLI or the simulator",
        ),
        (
            "app/intervals/models.py",
            "import sqlalchemy",
            "accounting and intervals are pure: no storage, SQL, HTTP or MQTT",
        ),
        (
            "app/storage/base.py",
            "import app.balance.routes",
            "routes are imported by nobody but the app factory",
        ),
        (
            "app/ledgers/store.py",
            "from app.http.times import parse_time",
            "app.http is a leaf helper for routes: domain code never imports it",
        ),
        (
            "app/registry/models.py",
            "import app.storage.base",
            "no import cycle between the packages of app",
        ),
    ],
)
def test_ci_import_check_fails_on_a_forbidden_import(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    _copy_repo(tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", encoding="utf-8")

    result = _run_check(tmp_path)

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    broken = output.split("Broken contracts", 1)[1]
    assert contract in broken, output


def test_ci_import_check_passes_on_an_unchanged_copy(tmp_path: Path) -> None:
    """The control: the same copy without the added import is clean, so the failures above
    come from the one line each adds."""
    _copy_repo(tmp_path)
    result = _run_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def package_cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def test_package_cycles_finds_a_cycle() -> None:
    # a -> b -> c -> a is one cycle, d hangs off it, e -> f -> e a second one
    edges = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["f"], "f": ["e"]}
    assert package_cycles(edges) == [["a", "b", "c"], ["e", "f"]]
    assert package_cycles({"a": ["b"], "b": ["c"]}) == []


def _pattern(expression: str) -> re.Pattern[str]:
    parts = re.escape(expression.strip()).replace(r"\*\*", ".+").replace(r"\*", "[^.]+")
    return re.compile(f"^{parts}$")


def test_no_import_cycle_between_the_packages_of_app() -> None:
    (contract,) = [c for c in _contracts() if c["type"] == "acyclic_siblings"]
    allowed = sorted(contract["ignore_imports"])
    assert set(allowed) <= ALLOWED_UPWARD_IMPORTS, "the allow-list may only shrink"
    rules = [
        (_pattern(importer), _pattern(imported))
        for importer, imported in (entry.split("->") for entry in allowed)
    ]

    graph = grimp.build_graph(*PACKAGES)
    edges: dict[str, set[str]] = {}
    used = [False] * len(rules)
    for module in graph.modules:
        if not module.startswith("app."):
            continue
        package = ".".join(module.split(".")[:2])
        for imported in graph.find_modules_directly_imported_by(module):
            target = ".".join(imported.split(".")[:2])
            if not imported.startswith("app.") or target == package:
                continue
            hits = [i for i, (a, b) in enumerate(rules) if a.match(module) and b.match(imported)]
            for i in hits:
                used[i] = True
            if not hits:
                edges.setdefault(package, set()).add(target)

    assert package_cycles(edges) == []
    # an entry that matches no import any more must leave the list
    assert all(used), [entry for entry, hit in zip(allowed, used, strict=True) if not hit]
