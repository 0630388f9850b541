"""The built-in live page in headless Chromium (Selenium), on real uvicorn + embedded store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from msgspec.structs import replace
from selenium.webdriver.common.by import By

from app.accounting.buckets import to_ns
from app.config import Settings
from app.intervals.models import IntervalEnergy
from app.ledgers import ApiRole, LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.registry import load_registry
from app.registry.models import Registry
from app.storage.base import WriteBatch
from app.storage.embedded import EmbeddedStorage
from app.telemetry.decode import TelemetryDecoder
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
    services: Any = None

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


@contextlib.contextmanager
def serve(
    tmp_path: Path,
    reg: Registry,
    now_ns: int,
    intervals: list[IntervalEnergy],
    anonymous_read: bool,
    keys: dict[str, str] | None = None,
) -> Iterator[Served]:
    """uvicorn on a free loopback port with `reg`, the clock pinned at `now_ns`, `intervals`
    stored; `keys` (if given) receives a viewer and a manager key."""
    live = LiveState(reg, clock=lambda: now_ns)
    settings = Settings(
        data_dir=tmp_path, parks=tmp_path / "parks.yaml", anonymous_read=anonymous_read
    )
    port = free_port()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        storage = EmbeddedStorage(tmp_path / "store.db")
        ledgers = LedgerStore(f"sqlite:///{tmp_path}/ledgers.db")
        if keys is not None:
            for role in (ApiRole.VIEWER, ApiRole.MANAGER):
                keys[role.value] = ledgers.create_key(role, "test").key
            # a viewer of another park only (docs/security.md, keys scoped to parks)
            keys["viewer-elsewhere"] = ledgers.create_key(
                ApiRole.VIEWER, "elsewhere", parks=["elsewhere"]
            ).key
        await storage.write(WriteBatch(intervals=intervals))
        app = create_app(settings, registry=reg, storage=storage, ledgers=ledgers, live=live)
        app.state.services.balance.clock = lambda: now_ns
        app.state.services.balance.cache.clock = lambda: now_ns
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        state["server"] = server
        state["services"] = app.state.services
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
        yield Served(f"http://127.0.0.1:{port}", live, state["loop"], state["services"])
    finally:
        state["server"].should_exit = True
        thread.join(15)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    reg = registry()
    park = reg.park("demo")
    assert park is not None
    # today 00:00-14:00, hour h: 100 kWh imported; PV 50 × (h − 5) kWh from 06:00
    rows = []
    for h in range(14):
        start = MIDNIGHT + timedelta(hours=h)
        grid = iv(park, "grid-main", start, 60, energy_import_kwh=100.0)
        # 03:00-04:00 rests on a suppressed glitch: the page says so
        rows.append(replace(grid, flags=("glitch",)) if h == 3 else grid)
        rows.append(iv(park, "pv-1", start, 60, energy_kwh=50.0 * max(0, h - 5)))
        rows.append(iv(park, "bldg-a", start, 60, energy_import_kwh=60.0))
    with serve(tmp_path, reg, NOW_NS, rows, anonymous_read=True) as s:
        yield s


def reading(device: str, age_s: float, **values: float) -> Reading:
    return Reading("demo", device, NOW_NS - int(age_s * S), dict(values))


def shot(driver: Any, target: Path) -> None:
    """Screenshot into a temp file; copied over the docs image with LINGTAN_UPDATE_SCREENSHOT=1."""
    png = driver.get_screenshot_as_png()
    assert len(png) > 10_000
    if os.environ.get("LINGTAN_UPDATE_SCREENSHOT") == "1":
        target.write_bytes(png)


def _driver(*, performance: bool = False) -> Any:
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
    prefs = {"browser": "ALL", **({"performance": "ALL"} if performance else {})}
    opts.set_capability("goog:loggingPrefs", prefs)
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


def test_live_page_shows_and_updates_live_numbers(served: Served, driver: Any) -> None:
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
    assert sorted(links) == [
        ["Grid", "Electric loads", 420.5],
        ["PV / wind", "Electric loads", 79.5],
    ]

    # today's figures rest on a suppressed glitch (03:00 of grid-main): the page says so
    wait_for(
        lambda: (
            text(driver, "quality")
            == "⚠ Today's figures rest on repaired data: glitch-suppressed 1 intervals (grid-main)"
        ),
        "quality flags",
    )

    # an open alarm of the park is on the page (docs/alarms.md), and leaves it when resolved
    from app.alarms.store import AlarmRecord

    assert not driver.find_element(By.ID, "alarms-box").is_displayed()
    alarm = AlarmRecord(
        id=7,
        park="demo",
        rule="device_offline",
        subject="pv-1",
        severity="warning",
        state="firing",
        value=1200.0,
        threshold=960.0,
        params={},
        message={"en": "pv-1 silent for 20 min", "zh": "pv-1 已 20 分钟无数据"},
        fired_at=datetime.fromtimestamp(NOW_NS / 1e9, tz=UTC),
        acked_at=None,
        acked_by=None,
        ack_reason=None,
        resolved_at=None,
    )
    view = served.services.alarms.view
    served.call(lambda: view.update([alarm]))
    served.call(lambda: served.live.apply([reading("grid-main", 0.6, power_kw=420.5)]))
    wait_for(lambda: text(driver, "alarms") == "pv-1 silent for 20 min", "the alarm on the page")
    served.call(lambda: view.update([]))
    served.call(lambda: served.live.apply([reading("grid-main", 0.7, power_kw=420.5)]))
    wait_for(lambda: not driver.find_element(By.ID, "alarms-box").is_displayed(), "alarm resolved")

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

    # Chinese (the default) relabels the page
    driver.get(f"{served.url}/parks/demo")
    wait_for(lambda: text(driver, "kpi-grid") == "420.5", "zh page numbers")
    assert "实时能源与碳" in driver.title or "实时能源与碳" in driver.page_source
    wait_for(lambda: "单位能耗碳排放" in text(driver, "evaluation"), "zh evaluation")
    time.sleep(1.0)  # let ECharts finish its animations before the screenshot
    # (the docs screenshots are of the demo park, below)
    assert len(driver.get_screenshot_as_png()) > 10_000

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


# --- the demo park (`lingtan up --demo`): heat, fuel, emissions, display mode ----------------

DEMO_REGISTRY = Path(__file__).resolve().parents[1] / "lingtan" / "demo-parks.yaml"
DISPLAY_SCREENSHOT = DOCS_SCREENSHOT.with_name("live-page-display.png")
DEMO = "shenfu-demo"
# a January morning in Shenyang (−13 °C): the gas boiler tops up district heat and heat pump
DEMO_NOW = datetime.fromisoformat("2026-01-15T06:45:00+08:00")
DEMO_MIDNIGHT = datetime.fromisoformat("2026-01-15T00:00:00+08:00")
#: the collector was down 03:00-04:00: no interval of that hour was stored
GAP = (to_ns(DEMO_MIDNIGHT + timedelta(hours=3)), to_ns(DEMO_MIDNIGHT + timedelta(hours=4)))
LOOPBACK = ("127.0.0.1", "localhost")
HEAT_METERS = ("boiler-gas-1", "dh-inlet", "hp-1")
#: window.prompt / alert / confirm, counted instead of shown (installed before any script)
PROMPT_TRAP = (
    "window.__prompts = 0;"
    "for (const f of ['prompt', 'alert', 'confirm'])"
    " window[f] = function () { window.__prompts += 1; return null; };"
)


@dataclass
class Demo:
    served: Served
    keys: dict[str, str]
    #: (device, counter, interval start ns) → amount, from the simulator's meters
    truth: dict[tuple[str, str, int], float]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    from simulator import TruthAccumulator, simulate

    reg = load_registry(DEMO_REGISTRY)
    park = reg.park(DEMO)
    assert park is not None
    truth = TruthAccumulator()
    messages = list(
        simulate(reg, DEMO, DEMO_MIDNIGHT, DEMO_NOW - DEMO_MIDNIGHT, step_s=60, seed=1, truth=truth)
    )
    # today's 15-minute intervals as the collector would have stored them, minus the gap
    values: dict[tuple[str, int], dict[str, float]] = {}
    amounts = {(d, c, s): v for (p, d, c, s), v in truth.by_interval().items() if p == DEMO}
    for (device, counter, start), amount in amounts.items():
        values.setdefault((device, start), {})[counter] = amount
    step = park.interval_minutes * 60 * S
    rows = [
        IntervalEnergy(DEMO, dev, park.device_map[dev].role.value, start, start + step, v)
        for (dev, start), v in sorted(values.items())
        if not GAP[0] <= start < GAP[1] and start + step <= to_ns(DEMO_NOW)
    ]
    keys: dict[str, str] = {}
    with serve(tmp_path, reg, to_ns(DEMO_NOW), rows, anonymous_read=False, keys=keys) as s:
        # the gateways' messages of the morning, decoded as the collector does, fed live
        decoder = TelemetryDecoder(reg)
        readings = [
            r for m in messages for r in decoder.decode(m.topic, m.payload, m.sim_ns).readings
        ]
        s.call(lambda: s.live.apply(readings))
        yield Demo(s, keys, amounts)


def _browser() -> Any:
    d = _driver(performance=True)
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PROMPT_TRAP})
    return d


def requested_urls(driver: Any) -> list[str]:
    """Every URL the browser requested so far (Chrome performance log, Network domain)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def assert_loopback_only(urls: list[str]) -> None:
    assert urls, "no request was logged"
    for url in urls:
        u = urlsplit(url)
        if u.scheme == "data":  # inline (the page's empty icon): nothing is fetched
            continue
        assert u.scheme in ("http", "ws") and u.hostname in LOOPBACK, url


def sankey_nodes(driver: Any) -> list[str]:
    return list(
        driver.execute_script(
            "return echarts.getInstanceByDom(document.getElementById('sankey'))"
            ".getOption().series[0].data.map(n => n.name);"
        )
    )


def test_demo_park_display_shows_heat_and_emissions_without_a_prompt(demo: Demo) -> None:
    url = demo.served.url
    with httpx.Client(base_url=url, timeout=10) as c:
        r = c.get(
            f"/api/v1/parks/{DEMO}/live", headers={"Authorization": f"Bearer {demo.keys['viewer']}"}
        )
        assert r.status_code == 200, r.text
        live = r.json()
    # the boiler runs on this cold morning (its meter sends gas and heat counters, no kW)
    assert live["thermal"]["boiler_heat_kw"] > 0 and live["thermal"]["fuels"][0]["per_h"] > 0
    assert live["emission_rate_kg_per_h"]["scope1"] > 0
    assert live["emission_rate_location_kg_per_h"] > live["emission_rate_kg_per_h"]["scope1"]

    driver = _browser()
    try:
        # the display link: key checked, kept in a cookie, and gone from the address
        driver.get(f"{url}/kiosk?park={DEMO}&key={demo.keys['viewer']}&lang=en")
        assert driver.current_url == f"{url}/parks/{DEMO}?lang=en&display=1"
        wait_for(lambda: text(driver, "status") == "live", "the stream")
        emitted = wait_for(lambda: text(driver, "kpi-emission-location"), "emission rate")
        assert float(emitted) > 0
        assert emitted == f"{live['emission_rate_location_kg_per_h']:.0f}"
        assert text(driver, "kpi-emission-market") == f"{live['emission_rate_market_kg_per_h']:.0f}"
        assert float(text(driver, "kpi-fuel")) > 0 and text(driver, "kpi-fuel-unit") == "m³/h"
        # the heat side of the Sankey
        nodes = sankey_nodes(driver)
        for node in ("Natural gas", "Boiler", "District heat", "Heat pump", "Heat loads"):
            assert node in nodes, nodes
        # every meter reports every minute: nobody offline, no heat meter listed anywhere
        assert text(driver, "stale") == "none"
        for box in ("waiting-box", "stale-q-box"):
            assert not driver.find_element(By.ID, box).is_displayed()
        # park-local time for people, no fractions of a second
        assert text(driver, "clock") == "06:45:00 (UTC+08:00)"
        # the collector's outage 03:00-04:00 is a gap in today's curves, not 0 kW
        hours, imports, emissions = wait_for(
            lambda: driver.execute_script(
                "const o = echarts.getInstanceByDom(document.getElementById('curves')).getOption();"
                "return o.series && o.series.length > 6 && "
                "[o.xAxis[0].data, o.series[1].data, o.series[6].data];"
            ),
            "today's curves",
        )
        assert len(hours) == 27 and hours[0] == "00:00" and hours[-1] == "06:30"
        gap = [i for i, h in enumerate(hours) if "03:00" <= h < "04:00"]
        assert gap == [12, 13, 14, 15]
        assert all(imports[i] is None and emissions[i] is None for i in gap)
        assert all(imports[i] is not None for i in range(27) if i not in gap)
        # 00:00-00:15 from the simulated grid meter: kWh in 15 min × 4 = kW
        first = demo.truth[("grid-main", "energy_import_kwh", to_ns(DEMO_MIDNIGHT))]
        assert imports[0] == pytest.approx(first * 4, abs=0.01)
        assert driver.execute_script("return window.__prompts") == 0
        # the key is in an HttpOnly cookie: page scripts cannot read it
        cookie = driver.get_cookie("lingtan_key")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert demo.keys["viewer"] not in driver.execute_script("return document.cookie")
        assert not driver.find_element(By.ID, "key-form").is_displayed()
        time.sleep(1.0)  # let ECharts finish its animations before the screenshot
        shot(driver, DISPLAY_SCREENSHOT)

        # the same browser, the desk layout in Chinese: still no key asked for
        driver.get(f"{url}/parks/{DEMO}")
        wait_for(lambda: text(driver, "status") == "实时", "zh stream")
        assert text(driver, "updated") == "2026-01-15 06:45:00 (UTC+08:00)"
        assert "锅炉" in sankey_nodes(driver) and "外购热力" in sankey_nodes(driver)
        wait_for(lambda: "单位能耗碳排放" in text(driver, "evaluation"), "zh evaluation")
        time.sleep(1.0)
        shot(driver, DOCS_SCREENSHOT)
        assert driver.execute_script("return window.__prompts") == 0

        assert_loopback_only(requested_urls(driver))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
    finally:
        driver.quit()


def test_without_a_key_the_page_says_so_and_takes_one_without_a_prompt(demo: Demo) -> None:
    url = demo.served.url
    driver = _browser()
    try:
        driver.get(f"{url}/parks/{DEMO}?lang=en")
        wait_for(lambda: text(driver, "status") == "API key needed", "the 401")
        assert driver.find_element(By.ID, "need-key").is_displayed()
        form = driver.find_element(By.ID, "key-form")
        assert form.is_displayed()
        form.find_element(By.NAME, "key").send_keys(demo.keys["viewer"])
        form.submit()
        wait_for(lambda: text(driver, "status") == "live", "the stream after the key form")
        assert driver.current_url == f"{url}/parks/{DEMO}?lang=en"
        assert float(text(driver, "kpi-emission-market")) > 0
        # a wall display without a valid key shows how to fix it, and never prompts
        driver.get(f"{url}/kiosk/forget?park={DEMO}&lang=en")
        assert driver.get_cookie("lingtan_key") is None
        driver.get(f"{url}/parks/{DEMO}?lang=en&display=1")
        wait_for(lambda: "display link" in text(driver, "need-key"), "display: key needed")
        assert not driver.find_element(By.ID, "key-form").is_displayed()
        assert driver.execute_script("return window.__prompts") == 0
        assert_loopback_only(requested_urls(driver))
    finally:
        driver.quit()


def test_display_link_takes_viewer_keys_only_and_the_cookie_only_reads(demo: Demo) -> None:
    live = f"/api/v1/parks/{DEMO}/live"
    with httpx.Client(base_url=demo.served.url, timeout=10) as c:
        r = c.get("/kiosk", params={"park": DEMO, "key": demo.keys["manager"], "lang": "en"})
        assert r.status_code == 403 and "viewer key only" in r.text and "manager" in r.text
        r = c.get("/kiosk", params={"park": DEMO, "key": "not-a-key", "lang": "en"})
        assert r.status_code == 401 and "lingtan keys create --role viewer" in r.text
        # a viewer key of another park opens nothing here
        r = c.get("/kiosk", params={"park": DEMO, "key": demo.keys["viewer-elsewhere"]})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert (
            c.get("/kiosk", params={"park": "nope", "key": demo.keys["viewer"]}).status_code == 404
        )
        r = c.get("/kiosk", params={"park": DEMO, "key": demo.keys["viewer"]})
        assert r.status_code == 303 and r.headers["location"] == f"/parks/{DEMO}?lang=zh&display=1"
        set_cookie = r.headers["set-cookie"]
        assert set_cookie.startswith(f"lingtan_key={demo.keys['viewer']};")
        for attr in ("HttpOnly", "SameSite=strict", "Path=/"):
            assert attr.lower() in set_cookie.lower(), set_cookie
        # the older `?key=` address and `/?park=..&key=..` sign in the same way
        r = c.get(f"/parks/{DEMO}", params={"key": demo.keys["viewer"], "lang": "en"})
        assert r.status_code == 303 and r.headers["location"] == f"/parks/{DEMO}?lang=en"
        r = c.get("/", params={"park": DEMO, "key": demo.keys["viewer"]})
        assert r.status_code == 303 and r.headers["location"] == f"/parks/{DEMO}?lang=zh&display=1"
    # the cookie authenticates reads, never writes (even holding a manager key)
    for role, method, path, expected in (
        ("viewer", "GET", live, 200),
        ("manager", "POST", f"/api/v1/parks/{DEMO}/offsets", 401),
    ):
        with httpx.Client(
            base_url=demo.served.url, timeout=10, cookies={"lingtan_key": demo.keys[role]}
        ) as c:
            assert c.request(method, path, json={}).status_code == expected
    with httpx.Client(base_url=demo.served.url, timeout=10) as c:
        assert c.get(live).status_code == 401  # and without it, reading needs a key
