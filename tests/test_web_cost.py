"""The live page's cost row in headless Chromium, under the shipped Liaoning example tariff."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.registry import load_registry
from app.registry.models import Registry
from tests.api_support import iv, registry
from tests.test_web_page import (
    DOCS_SCREENSHOT,
    MIDNIGHT,
    NOW_NS,
    Served,
    driver,  # noqa: F401  (the fixture)
    reading,
    serve,
    shot,
    text,
    wait_for,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "parks.yaml"
COST_SCREENSHOT = DOCS_SCREENSHOT.with_name("live-page-cost.png")


def with_example_tariff() -> Registry:
    example = load_registry(EXAMPLES).park("shenfu-demo")
    assert example is not None and example.tariff is not None
    reg = registry()
    parks = [
        {**p.model_dump(), **({"tariff": example.tariff.model_dump()} if p.id == "demo" else {})}
        for p in reg.parks
    ]
    return Registry.model_validate({"parks": parks})


@pytest.fixture
def served_cost(tmp_path: Path) -> Iterator[Served]:
    reg = with_example_tariff()
    park = reg.park("demo")
    assert park is not None
    # today (Monday 2026-06-01) 00:00-14:00, hourly: 100 kWh imported; PV 50 × (h − 5) from 06:00
    rows = []
    for h in range(14):
        start = MIDNIGHT + timedelta(hours=h)
        rows.append(iv(park, "grid-main", start, 60, energy_import_kwh=100.0))
        rows.append(iv(park, "pv-1", start, 60, energy_kwh=50.0 * max(0, h - 5)))
    with serve(tmp_path, reg, NOW_NS, rows, anonymous_read=True) as s:
        yield s


def test_cost_row_under_the_liaoning_example(served_cost: Served, driver: Any) -> None:  # noqa: F811
    served_cost.call(
        lambda: served_cost.live.apply(
            [reading("grid-main", 10, power_kw=300.0), reading("pv-1", 5, power_kw=100.0)]
        )
    )
    driver.get(f"{served_cost.url}/parks/demo?lang=en")
    # June, a workday, 14:00: flat (11:30–17:00) at 0.60; 300 kW imported → 180 CNY/h
    wait_for(lambda: text(driver, "kpi-period") == "flat", "the period now")
    assert text(driver, "kpi-price") == "0.600"
    assert text(driver, "kpi-export-price") == "0.375"
    assert text(driver, "kpi-cost-rate") == "180.0"
    assert "not confirmed" in text(driver, "kpi-period-note")
    # today, each hour priced by its start: valley 00–04 (5 h) 500 kWh × 0.30 = 150; flat
    # 05, 06, 07, 12, 13 500 kWh × 0.60 = 300; peak 08–11 400 kWh × 0.90 = 360 → 810
    wait_for(lambda: text(driver, "kpi-cost-today") == "810", "today's cost")
    assert text(driver, "kpi-cost-periods") == "flat 300 · peak 360 · valley 150"
    # PV used on site at its hour's price: 06 50 × 0.6 + 07 100 × 0.6 + (150 + 200 + 250 +
    # 300) × 0.9 + (350 + 400) × 0.6 = 30 + 60 + 810 + 450 = 1350
    assert text(driver, "kpi-saved-today") == "1350"
    # demand: hourly meters, the hour's mean: 100 kW; 100 × 33 CNY/kW = 3300 so far
    assert text(driver, "kpi-demand") == "100"
    assert text(driver, "kpi-demand-month") == "demand charge so far 3300 CNY"

    driver.get(f"{served_cost.url}/parks/demo")
    wait_for(lambda: text(driver, "kpi-period") == "平段", "zh period")
    wait_for(lambda: text(driver, "kpi-cost-today") == "810", "zh cost")
    wait_for(lambda: "单位能耗碳排放" in text(driver, "evaluation"), "zh evaluation")
    time.sleep(1.0)  # let ECharts finish its animations before the screenshot
    shot(driver, COST_SCREENSHOT)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_no_tariff_no_cost_row(served_cost: Served, driver: Any) -> None:  # noqa: F811
    driver.get(f"{served_cost.url}/parks/berlin?lang=en")
    wait_for(lambda: text(driver, "status") == "live", "the stream")
    from selenium.webdriver.common.by import By

    assert not driver.find_element(By.ID, "cost-panel").is_displayed()
