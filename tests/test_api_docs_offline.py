"""`/docs` and `/redoc` work air-gapped: no external URL in their pages, assets served by the app,
and a headless Chromium that renders them requests nothing but the app."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from app.config import Settings
from app.ledgers import LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.storage.embedded import EmbeddedStorage
from tests.api_support import registry
from tests.fixtures.influx import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")

# src="…", href="…", spec-url="…" (ReDoc), and the JS config's url: '…' (the OpenAPI
# document) and oauth2RedirectUrl: '…' (Swagger UI)
_REF = re.compile(
    r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|(?:url|oauth2RedirectUrl)["']?\s*:\s*["']([^"']+)["']"""
)
_ABSOLUTE = re.compile(r"""(?:https?:)?//[^\s"'<>]+""")


def _app(tmp_path: Path, storage: EmbeddedStorage, ledgers: LedgerStore) -> FastAPI:
    reg = registry()
    return create_app(
        Settings(data_dir=tmp_path, parks=tmp_path / "parks.yaml", anonymous_read=True),
        registry=reg,
        storage=storage,
        ledgers=ledgers,
        live=LiveState(reg),
        refresh_today_in_background=False,
    )


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    storage = EmbeddedStorage(tmp_path / "store.db")
    ledgers = LedgerStore(f"sqlite:///{tmp_path}/ledgers.db")
    app = _app(tmp_path, storage, ledgers)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://lingtan.test") as c:
            yield c
    finally:
        await storage.close()
        ledgers.close()


def references(html: str) -> list[str]:
    """Every URL a page names in an attribute or in its Swagger/ReDoc configuration."""
    return [a or b for a, b in _REF.findall(html)]


def test_reference_parser_sees_cdn_links() -> None:
    """The checks below would notice what FastAPI's default pages contain."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    default = get_swagger_ui_html(openapi_url="/openapi.json", title="t").body.decode()
    refs = references(default)
    assert "/openapi.json" in refs
    assert any(r.startswith("https://cdn.jsdelivr.net/") for r in refs), refs
    redoc = get_redoc_html(openapi_url="/openapi.json", title="t").body.decode()
    assert _ABSOLUTE.search(redoc) is not None  # Google fonts and the CDN bundle


async def test_docs_pages_name_no_external_url_and_their_assets_are_served(
    client: httpx.AsyncClient,
) -> None:
    fetched: set[str] = set()
    for page in PAGES:
        r = await client.get(page)
        assert r.status_code == 200, page
        assert r.headers["content-type"].startswith("text/html"), page
        html = r.text
        assert _ABSOLUTE.search(html) is None, (page, _ABSOLUTE.findall(html))
        if page == "/docs/oauth2-redirect":
            continue
        refs = references(html)
        assert len(refs) >= 3, (page, refs)  # the bundle, the favicon, the OpenAPI document
        for ref in refs:
            url = urljoin(f"http://lingtan.test{page}", ref)
            assert urlsplit(url).netloc == "lingtan.test", (page, ref)
            if url in fetched:
                continue
            fetched.add(url)
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url
    paths = {urlsplit(u).path for u in fetched}
    assert {
        "/openapi.json",
        "/static-docs/swagger-ui-bundle.js",
        "/static-docs/swagger-ui.css",
        "/static-docs/redoc.standalone.js",
        "/static-docs/favicon.png",
        "/docs/oauth2-redirect",
    } <= paths | {"/docs/oauth2-redirect"}
    swagger_js = await client.get("/static-docs/swagger-ui-bundle.js")
    assert "javascript" in swagger_js.headers["content-type"]
    # Swagger UI would ask the public validator for a badge unless told not to
    docs = (await client.get("/docs")).text
    assert '"validatorUrl": null' in docs


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        storage = EmbeddedStorage(tmp_path / "store.db")
        ledgers = LedgerStore(f"sqlite:///{tmp_path}/ledgers.db")
        app = _app(tmp_path, storage, ledgers)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        state["server"] = server
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
        yield f"http://127.0.0.1:{port}"
    finally:
        state["server"].should_exit = True
        thread.join(15)


def _driver() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("Debian chromium and chromium-driver are required (apt-get install ...)")
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
        "--window-size=1280,900",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))


def _requested(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _wait_text(driver: Any, css: str, want: str, timeout_s: float = 30.0) -> None:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        seen = " ".join(e.text for e in found)
        if want in seen:
            return
        time.sleep(0.2)
    raise AssertionError(f"{want!r} not rendered in {css!r} (saw {seen[:200]!r})")


def test_browser_renders_docs_without_leaving_the_machine(served: str, tmp_path: Path) -> None:
    driver = _driver()
    try:
        for page, css, shot in (
            ("/docs", ".swagger-ui .info .title", "api-docs-swagger.png"),
            ("/redoc", "h1", "api-docs-redoc.png"),
        ):
            driver.get(served + page)
            _wait_text(driver, css, "Lingtan API")
            # an operation of the API is listed, so the OpenAPI document was loaded and drawn
            _wait_text(driver, "body", "/api/v1/parks")
            driver.save_screenshot(str(tmp_path / shot))
            urls = _requested(driver)
            assert any(u.startswith(served + "/static-docs/") for u in urls), urls
            for u in urls:
                scheme = urlsplit(u).scheme
                host = urlsplit(u).hostname
                assert scheme in ("data", "blob") or host == "127.0.0.1", (page, u)
        if os.environ.get("LINGTAN_DOCS_SCREENSHOTS"):
            # refresh the pictures in docs/: LINGTAN_DOCS_SCREENSHOTS=docs pytest this file
            out = Path(os.environ["LINGTAN_DOCS_SCREENSHOTS"])
            for shot in ("api-docs-swagger.png", "api-docs-redoc.png"):
                (out / shot).write_bytes((tmp_path / shot).read_bytes())
    finally:
        driver.quit()
