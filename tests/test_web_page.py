"""The built-in live page in headless Chromium (Selenium), on real uvicorn + embedded store."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from app.accounting.buckets import to_ns
from app.config import Settings
from app.http.options import ApiOptions
from app.ledgers import LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.storage.base import WriteBatch
from app.storage.embedded import EmbeddedStorage
from app.telemetry.models import Reading
from tests.api_support import iv, registry
from tests.fixtures.influx import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "live-page.png"

# The park's clock is pinned: "today" is 2026-06-01 (Asia/Shanghai) up to 14:00.
NOW = datetime.fromisoformat("2026-06-01T14:00:00+08:00")
NOW_NS = to_ns(NOW)
MIDNIGHT = datetime.fromisoformat("2026-06-01T00:00:00+08:00")
S = 1_000_000_000

T = TypeVar("T")


@dataclass
class Served:
    url: str
    live: LiveState
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's event loop (LiveState is not shared across threads)."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except Exception as exc:  # handed to the test thread
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    reg = registry()
    park = reg.park("demo")
    assert park is not None
    live = LiveState(reg, clock=lambda: NOW_NS)
    settings = Settings(data_dir=tmp_path, parks=tmp_path / "parks.yaml")
    port = free_port()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        storage = EmbeddedStorage(tmp_path / "store.db")
        ledgers = LedgerStore(f"sqlite:///{tmp_path}/ledgers.db")
        # today 00:00-14:00, hour h: 100 kWh imported; PV 50 × (h − 5) kWh from 06:00
        rows = []
        for h in range(14):
            start = MIDNIGHT + timedelta(hours=h)
            grid = iv(park, "grid-main", start, 60, energy_import_kwh=100.0)
            # 03:00-04:00 rests on a suppressed glitch: the page says so
            rows.append(replace(grid, flags=("glitch",)) if h == 3 else grid)
            rows.append(iv(park, "pv-1", start, 60, energy_kwh=50.0 * max(0, h - 5)))
            rows.append(iv(park, "bldg-a", start, 60, energy_import_kwh=60.0))
        await storage.write(WriteBatch(intervals=rows))
        app = create_app(
            settings,
            registry=reg,
            storage=storage,
            ledgers=ledgers,
            live=live,
            options=ApiOptions(anonymous_read=True),
        )
        app.state.services.balance.clock = lambda: NOW_NS
        app.state.services.balance.cache.clock = lambda: NOW_NS
        # row by row: the summing fast path does not read interval flags yet
        app.state.services.balance.cache.aggregate = False
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        state["server"] = server
        state["loop"] = asyncio.get_running_loop()
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        ready.set()
        try:
            await task
        finally:
            await storage.close()
            ledgers.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(20), "uvicorn did not start"
    try:
        yield Served(f"http://127.0.0.1:{port}", live, state["loop"])
    finally:
        state["server"].should_exit = True
        thread.join(15)


def reading(device: str, age_s: float, **values: float) -> Reading:
    return Reading("demo", device, NOW_NS - int(age_s * S), dict(values))


def _driver() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1250",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))


@pytest.fixture
def driver() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("Debian chromium and chromium-driver are required (apt-get install ...)")
    d = _driver()
    try:
        yield d
    finally:
        d.quit()


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def test_live_page_shows_and_updates_live_numbers(
    served: Served, driver: Any, tmp_path: Path
) -> None:
    served.call(
        lambda: served.live.apply(
            [
                reading("grid-main", 10, power_kw=300.0),
                reading("pv-1", 5, power_kw=100.0),
                reading("bldg-a", 20, power_kw=50.0),
            ]
        )
    )
    driver.get(f"{served.url}/parks/demo?lang=en")
    wait_for(lambda: text(driver, "kpi-grid") == "300.0", "grid import 300.0 kW")
    assert text(driver, "kpi-renewable") == "100.0"
    # loads draw 300 (grid) + 100 (PV) = 400 kW; green share 100 / 400 = 25 %
    assert text(driver, "kpi-load") == "400.0"
    assert text(driver, "kpi-green-share") == "25.0"
    assert text(driver, "status") == "live"

    # new telemetry arrives: the page follows the stream without reloading
    served.call(
        lambda: served.live.apply(
            [reading("grid-main", 2, power_kw=420.5), reading("pv-1", 1, power_kw=79.5)]
        )
    )
    wait_for(lambda: text(driver, "kpi-grid") == "420.5", "grid import 420.5 kW after update")
    wait_for(lambda: text(driver, "kpi-load") == "500.0", "load 420.5 + 79.5 = 500 kW")
    # 79.5 / 500 = 15.9 %
    assert text(driver, "kpi-green-share") == "15.9"

    # Sankey links: PV 79.5 → loads, grid 420.5 → loads (nothing exported or stored)
    links = driver.execute_script(
        "return echarts.getInstanceByDom(document.getElementById('sankey'))"
        ".getOption().series[0].links.map(l => [l.source, l.target, l.value]);"
    )
    assert sorted(links) == [["Grid", "Loads", 420.5], ["PV / wind", "Loads", 79.5]]

    # today's curves, hourly (the park's meters report hourly), in average kW: the loads
    # draw the 100 kW import plus the PV, which rises by 50 kW an hour from 06:00
    series = wait_for(
        lambda: driver.execute_script(
            "const c = echarts.getInstanceByDom(document.getElementById('curves'));"
            "const o = c && c.getOption();"
            "return o && o.series && [o.xAxis[0].data, o.series[0].data, o.series[2].data];"
        ),
        "today's curves",
    )
    hours, load_kw, pv_kw = series
    assert hours == [f"{h:02d}:00" for h in range(14)]
    assert load_kw == [100, 100, 100, 100, 100, 100, 150, 200, 250, 300, 350, 400, 450, 500]
    assert pv_kw == [0, 0, 0, 0, 0, 0, 50, 100, 150, 200, 250, 300, 350, 400]

    # the evaluation summary of 2026 (JSON of /evaluation)
    wait_for(lambda: "Carbon emissions per unit of energy" in text(driver, "evaluation"), "eval")
    assert text(driver, "eval-year") == "2026"
    # 14 hours of a year: no projection, and the glitch behind today's figures is named
    assert "insufficient data" in text(driver, "evaluation")
    assert "glitch-suppressed 1 intervals (grid-main)" in text(driver, "evaluation")
    assert text(driver, "quality") == (
        "⚠ Today's figures rest on repaired data: glitch-suppressed 1 intervals (grid-main)"
    )

    # Chinese (the default) relabels the page
    driver.get(f"{served.url}/parks/demo")
    wait_for(lambda: text(driver, "kpi-grid") == "420.5", "zh page numbers")
    assert "实时能源与碳" in driver.title or "实时能源与碳" in driver.page_source
    wait_for(lambda: "单位能耗碳排放" in text(driver, "evaluation"), "zh evaluation")
    time.sleep(1.0)  # let ECharts finish its animations before the screenshot
    shot = tmp_path / "live-page.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("LINGTAN_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_static_files_are_bundled_and_served(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as c:
        r = c.get("/static/vendor/echarts.min.js")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/javascript")
        assert len(r.content) > 500_000 and b"echarts" in r.content[:5000]
        assert c.get("/static/live.js").status_code == 200
        assert c.get("/static/../routes.py").status_code == 404
        assert c.get("/static/%2e%2e/routes.py").status_code == 404
        assert c.get("/static/nope.js").status_code == 404
        assert c.get("/parks/nope").status_code == 404
        page = c.get("/parks/demo", params={"lang": "en"})
        assert page.status_code == 200 and 'data-park="demo"' in page.text
        assert 'src="/static/vendor/echarts.min.js"' in page.text and "cdn" not in page.text
        # three parks: the root lists them instead of redirecting
        root = c.get("/", follow_redirects=False)
        assert root.status_code == 200
        for park in ("demo", "berlin", "store"):
            assert f'href="/parks/{park}?lang=zh"' in root.text
        assert c.get("/", params={"lang": "fr"}).status_code == 422
