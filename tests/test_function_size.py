"""No function in app/ or collectors/ is longer than 80 lines, short of a reason written here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "collectors")
MAX_LINES = 80

#: "path:function" -> why it stays long. Keep this short: split a function where a name
#: explains the piece instead of adding it here.
ALLOWED: dict[str, str] = {
    "app/ledgers/migrations/versions/0001_release_48a8756.py:upgrade": (
        "a released Alembic migration: schema history, never edited after release"
    ),
}


def _functions(path: Path) -> list[tuple[str, int, int]]:
    """(name, first line, lines) of every function and method in `path`, nested ones too;
    a function's lines run from its first decorator to its last statement."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            assert node.end_lineno is not None
            out.append((node.name, first, node.end_lineno - first + 1))
    return out


def _long_functions() -> dict[str, int]:
    found: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name, _, lines in _functions(path):
                if lines > MAX_LINES:
                    found[f"{rel}:{name}"] = lines
    return found


def test_no_function_over_80_lines() -> None:
    too_long = {k: n for k, n in _long_functions().items() if k not in ALLOWED}
    assert not too_long, (
        f"functions over {MAX_LINES} lines (split them where a name explains the piece, "
        f"or add them to ALLOWED with a reason): {too_long}"
    )


def test_allow_list_is_current() -> None:
    """Every entry still names a long function: a split function leaves the list."""
    long = _long_functions()
    stale = sorted(k for k in ALLOWED if k not in long)
    assert not stale, f"no longer over {MAX_LINES} lines, remove from ALLOWED: {stale}"
    assert all(reason.strip() for reason in ALLOWED.values())


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("def f():\n    pass\n", 2),
        ("@dec\n@dec2\nasync def f():\n    x = 1\n\n    return x\n", 6),
        ("class C:\n    def m(self):\n        def inner():\n            pass\n", 3),
    ],
)
def test_the_measure(tmp_path: Path, source: str, lines: int) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert max(n for _, _, n in _functions(path)) == lines
