"""The dashboard JSON is valid for Grafana and the provisioning files point at it."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.test_dashboards_macros import (
    DASHBOARD_DIR,
    PROVISIONING_DIR,
    load_all,
    panels,
    variables,
)

DASHBOARDS = load_all()
DS_UID = "lingtan-influx"
# Grafana unit ids for kW, kWh, percent; kgCO2 and tce are custom suffix units
KNOWN_UNITS = {
    "kwatt",
    "kwatth",
    "percent",
    "none",
    "suffix: kgCO2",
    "suffix: tce",
    "currencyCNY",
    "dateTimeFromNow",
}


def test_the_three_dashboards_exist() -> None:
    titles = {d["title"] for d in DASHBOARDS.values()}
    assert titles == {
        "Lingtan · Park overview",
        "Lingtan · Carbon & evaluation",
        "Lingtan · Data quality",
    }


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_dashboard_structure(uid: str) -> None:
    d = DASHBOARDS[uid]
    assert d["schemaVersion"] >= 36
    assert "id" not in d or d["id"] is None  # instance-specific; the uid identifies it
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), ids
    cells: dict[tuple[int, int], int] = {}
    for p in panels(d):
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0
        assert g["x"] + g["w"] <= 24, (p["title"], g)
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['id']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]
        assert p["datasource"] == {"type": "influxdb", "uid": DS_UID}
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == DS_UID
            assert t["rawQuery"] is True and t["query"].lstrip().upper().startswith("SELECT")
        assert p.get("description"), f"panel {p['title']} explains itself"


def _units(p: dict[str, Any]) -> set[str]:
    fc = p["fieldConfig"]
    units = {fc["defaults"]["unit"]} if "unit" in fc["defaults"] else set()
    for o in fc.get("overrides", []):
        units |= {prop["value"] for prop in o["properties"] if prop["id"] == "unit"}
    return units


def test_units_are_set_where_a_quantity_is_shown() -> None:
    by_title = {p["title"]: _units(p) for d in DASHBOARDS.values() for p in panels(d)}
    assert by_title["Power by device"] == {"kwatt"}
    assert by_title["Electricity by role"] == {"kwatth"}
    assert by_title["Green share (physical)"] == {"percent"}
    assert by_title["Storage state of charge"] == {"percent"}
    assert by_title["Monthly emissions by scope"] == {"suffix: kgCO2"}
    assert by_title["Freshness: last power reading per device"] == {"dateTimeFromNow", "kwatt"}
    for title, units in by_title.items():
        assert units <= KNOWN_UNITS, title
        table = title.startswith(("Monthly interval", "Dead letters without", "Latest", "Flagged"))
        assert units or table, f"{title}: no unit"


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_template_variables(uid: str) -> None:
    d = DASHBOARDS[uid]
    v = variables(d)
    assert v["park"]["query"] == 'SHOW TAG VALUES FROM "reading" WITH KEY = "park"'
    assert v["park"]["datasource"]["uid"] == DS_UID
    if "device" in v:
        assert v["device"]["includeAll"] and v["device"]["multi"]
        assert '"park" =~ /^$park$/' in v["device"]["query"]
    # every $variable a query uses is defined (Grafana's own macros aside)
    used: set[str] = set()
    for p in panels(d):
        for t in p["targets"]:
            used |= set(re.findall(r"\$\{?(\w+)", t["query"]))
    assert used - {"timeFilter", "__interval", "__interval_ms", "__timeFilter"} <= set(v)


def test_carbon_factors_are_constants_of_the_spec() -> None:
    v = variables(DASHBOARDS["lingtan-carbon"])
    assert {k: (v[k]["type"], v[k]["query"]) for k in ("grid_factor", "residual_factor")} == {
        "grid_factor": ("constant", "0.5306"),
        "residual_factor": ("constant", "0.6096"),
    }
    assert v["gas_factor"]["query"] == "2.162"


def test_provisioning_datasource() -> None:
    doc = yaml.safe_load((PROVISIONING_DIR / "datasources" / "lingtan.yaml").read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["uid"] == DS_UID and ds["type"] == "influxdb" and ds["access"] == "proxy"
    assert ds["url"] == "http://influxdb:8086"  # the compose service
    assert ds["jsonData"]["dbName"] == "${LINGTAN_INFLUX_DB}"


def test_provisioning_dashboards_point_at_the_mounted_folder() -> None:
    doc = yaml.safe_load((PROVISIONING_DIR / "dashboards" / "lingtan.yaml").read_text())
    (prov,) = doc["providers"]
    assert prov["type"] == "file" and prov["folderUid"] == "lingtan"
    compose = yaml.safe_load((DASHBOARD_DIR.parent / "docker-compose.yml").read_text())
    mounts = {}
    for vol in compose["services"]["grafana"]["volumes"]:
        host, target = vol.split(":")[:2]
        mounts[target] = host
    # the provider's path is where compose mounts ./dashboards, which holds the JSON
    assert mounts[prov["options"]["path"]] == "./dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./dashboards/provisioning"
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == [
        "carbon-evaluation.json",
        "data-quality.json",
        "park-overview.json",
    ]
