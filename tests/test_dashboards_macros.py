"""Grafana macro substitution for the dashboard tests (shared helpers), and tests of it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = ROOT / "dashboards"
PROVISIONING_DIR = DASHBOARD_DIR / "provisioning"


def load_all() -> dict[str, dict[str, Any]]:
    """uid -> dashboard, from every JSON file in dashboards/."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        out[doc["uid"]] = doc
    return out


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


# Grafana's kbn.regexEscape: /[\\^$*+?.()|[\]{}\/]/g -> '\\$&'
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|\[\]{}/])")


def regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(r"\\\1", value)


def format_variable(variable: Mapping[str, Any], value: str | Sequence[str]) -> str:
    """A variable's value as Grafana's InfluxDB datasource interpolates it.

    Multi-value / include-all variables are regex-escaped, and a list becomes `(a|b)`;
    a plain single-value variable (textbox, constant, single query) goes in as it is.
    """
    if isinstance(value, str):
        if variable.get("multi") or variable.get("includeAll"):
            return regex_escape(value)
        return value
    return "(" + "|".join(regex_escape(v) for v in value) + ")"


def interpolate(
    query: str,
    *,
    start_ms: int,
    end_ms: int,
    interval: str,
    interval_ms: int,
    values: Mapping[str, str],
) -> str:
    """Replace Grafana's macros and the (already formatted) variable values in `query`."""
    time_filter = f"time >= {start_ms}ms and time <= {end_ms}ms"
    q = query.replace("$__timeFilter", time_filter).replace("$timeFilter", time_filter)
    q = q.replace("$__interval_ms", str(interval_ms)).replace("$__interval", interval)
    q = q.replace("$interval", interval)

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {query!r}")
        return values[name]

    # ${name} and $name (longest names first is implicit: \w+ is greedy)
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", var, q)


def duration_ms(interval: str) -> int:
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", interval)
    assert m, interval
    return int(m.group(1)) * units[m.group(2)]


# --- the helpers' own tests: the query tests are only as honest as these substitutions


def test_regex_escape_like_grafana() -> None:
    assert regex_escape("shenfu-demo") == "shenfu-demo"
    assert regex_escape("a.b") == r"a\.b"
    assert regex_escape("x/y(z)") == r"x\/y\(z\)"


def test_format_variable_multi_single_and_plain() -> None:
    multi = {"multi": True, "includeAll": True}
    plain = {"multi": False, "includeAll": False}
    assert format_variable(multi, ["pv.1", "grid"]) == r"(pv\.1|grid)"
    assert format_variable(multi, "pv.1") == r"pv\.1"
    assert format_variable(plain, "0.5306") == "0.5306"


def test_interpolate_macros_and_variables() -> None:
    q = (
        'SELECT mean("p") * $f FROM "r" WHERE "park" =~ /^$park$/ AND $timeFilter '
        "GROUP BY time($__interval) tz('${tz}')"
    )
    out = interpolate(
        q,
        start_ms=1000,
        end_ms=2000,
        interval="15m",
        interval_ms=900_000,
        values={"f": "2", "park": "a", "tz": "Asia/Shanghai"},
    )
    assert out == (
        'SELECT mean("p") * 2 FROM "r" WHERE "park" =~ /^a$/ AND '
        "time >= 1000ms and time <= 2000ms GROUP BY time(15m) tz('Asia/Shanghai')"
    )
    assert duration_ms("15m") == 900_000
    assert duration_ms("1h") == 3_600_000
