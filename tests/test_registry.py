"""Park registry loading: the example file loads; every kind of mistake names file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.registry import RegistryError, Role, load_registry, parse_registry

REPO = Path(__file__).resolve().parents[1]


def test_example_registry_loads() -> None:
    registry = load_registry(REPO / "examples" / "parks.yaml")
    park = registry.park("shenfu-demo")
    assert park is not None
    assert park.name == "沈抚示范零碳园区"
    assert str(park.tz) == "Asia/Shanghai"
    pv = registry.device("shenfu-demo", "pv-roof-a")
    assert pv is not None and pv.role is Role.PV and pv.max_kw == 2000
    assert registry.device("shenfu-demo", "bldg-a").included_in == "grid-main"  # type: ignore[union-attr]
    assert registry.device("shenfu-demo", "nope") is None
    assert registry.park("nope") is None


BAD_CASES = [
    # (yaml, expected line, expected words)
    ("parks:\n  - id: a\n    devices:\n      - {id: d1, role: solar}\n", 4, "role"),
    (
        "parks:\n  - id: a\n    devices:\n"
        "      - {id: d1, role: grid}\n      - {id: d1, role: pv}\n",
        5,
        "duplicate device id 'd1'",
    ),
    (
        "parks:\n  - id: a\n    devices:\n      - {id: d1, role: grid}\n"
        "      - {id: b, role: load, included_in: ghost}\n",
        5,
        "included_in 'ghost'",
    ),
    ("parks:\n  - id: a\n    timezone: Mars/Olympus\n", 3, "unknown time zone 'Mars/Olympus'"),
    ("parks:\n  - id: a\n    timezone: Asia\n", 3, "unknown time zone 'Asia'"),
    ("parks:\n  - id: a\n  - id: a\n", 3, "duplicate park id 'a'"),
    ("parks:\n  - id: a\n    devices:\n      - {id: g, role: heat_fuel}\n", 4, "needs 'fuel'"),
    ("parks:\n  - id: 'bad id'\n", 2, "id"),
    ("parks:\n  - id: a\n    colour: red\n", 3, "colour"),
    ("parks: [\n", 2, "not valid YAML"),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD_CASES)
def test_errors_name_file_line_and_problem(text: str, line: int, words: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_registry(text, "parks.yaml")
    message = str(info.value)
    assert f"parks.yaml:{line}:" in message, message
    assert words in message, message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read the park registry"):
        load_registry(tmp_path / "absent.yaml")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("")
    with pytest.raises(RegistryError, match="empty"):
        load_registry(tmp_path / "p.yaml")
