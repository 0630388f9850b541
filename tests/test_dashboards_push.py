"""`lingtan dashboards push` against a recording stand-in of Grafana's HTTP API (stdlib server)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.dashboards.push import datasource_body, push
from lingtan.cli import main
from tests.test_dashboards_macros import DASHBOARD_DIR, load_all

TOKEN = "glsa_test_token_0123456789"


class FakeGrafana:
    """Keeps datasources, folders and dashboards like Grafana does; records every request.

    Paths and bodies follow Grafana's documented HTTP API: GET/PUT /api/datasources/uid/<uid>,
    POST /api/datasources, GET /api/folders/<uid>, POST /api/folders, POST /api/dashboards/db.
    Anything else answers 404, a wrong token 401, a malformed body 400.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.auth = f"Bearer {TOKEN}"
        self._next_id = 1

    def handle(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        if auth != self.auth:
            return 401, {"message": "Unauthorized"}
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            if uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            return 200, self.datasources[uid]
        if method == "POST" and path == "/api/datasources":
            if not {"name", "type", "access", "url"} <= set(body):
                return 400, {"message": "bad datasource"}
            if body.get("uid") in self.datasources:
                return 409, {"message": "data source with the same uid already exists"}
            if any(d["name"] == body["name"] for d in self.datasources.values()):
                return 409, {"message": "data source with the same name already exists"}
            self.datasources[body["uid"]] = {**body, "id": self._id()}
            return 200, {"message": "Datasource added", "datasource": body}
        if method == "PUT" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            if uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            keep_id = self.datasources[uid]["id"]
            self.datasources[uid] = {**body, "id": keep_id}
            return 200, {"message": "Datasource updated"}
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.rsplit("/", 1)[1]
            if uid not in self.folders:
                return 404, {"message": "folder not found"}
            return 200, self.folders[uid]
        if method == "POST" and path == "/api/folders":
            if body.get("uid") in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"]}
            return 200, self.folders[body["uid"]]
        if method == "POST" and path == "/api/dashboards/db":
            dash = body.get("dashboard")
            if not isinstance(dash, dict) or "uid" not in dash or "title" not in dash:
                return 400, {"message": "Dashboard title cannot be empty"}
            if body.get("folderUid") and body["folderUid"] not in self.folders:
                return 400, {"message": "folder not found"}
            existing = self.dashboards.get(dash["uid"])
            if existing is not None and not body.get("overwrite"):
                return 412, {"status": "version-mismatch"}
            version = existing["version"] + 1 if existing else 1
            self.dashboards[dash["uid"]] = {
                "dashboard": dash,
                "folderUid": body.get("folderUid"),
                "version": version,
            }
            return 200, {"status": "success", "uid": dash["uid"], "version": version}
        return 404, {"message": "Not found"}

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def state(self) -> dict[str, Any]:
        """The end state, without Grafana's own counters (ids, versions)."""
        return {
            "datasources": {
                k: {f: v for f, v in d.items() if f != "id"} for k, d in self.datasources.items()
            },
            "folders": self.folders,
            "dashboards": {k: (d["dashboard"], d["folderUid"]) for k, d in self.dashboards.items()},
        }


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, payload = fake.handle(
                self.command, self.path, self.headers.get("Authorization"), body
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_push_creates_everything_in_the_documented_shapes(
    grafana: tuple[FakeGrafana, str],
) -> None:
    fake, url = grafana
    result = push(url, TOKEN, "http://influxdb:8086", "lingtan", DASHBOARD_DIR)
    assert result.datasource == "created" and result.folder == "created"
    assert sorted(result.dashboards) == sorted(load_all())

    calls = [(m, p) for m, p, _ in fake.requests]
    assert calls[:4] == [
        ("GET", "/api/datasources/uid/lingtan-influx"),
        ("POST", "/api/datasources"),
        ("GET", "/api/folders/lingtan"),
        ("POST", "/api/folders"),
    ]
    assert calls[4:] == [("POST", "/api/dashboards/db")] * 3
    ds = fake.datasources["lingtan-influx"]
    assert ds["type"] == "influxdb" and ds["access"] == "proxy"
    assert ds["url"] == "http://influxdb:8086"
    assert ds["jsonData"]["dbName"] == "lingtan"
    assert "secureJsonData" not in ds  # no credentials given, none invented
    for _, _, body in fake.requests[4:]:
        assert body["overwrite"] is True and body["folderUid"] == "lingtan"
        assert "id" not in body["dashboard"]
    on_disk = load_all()
    for uid, (dash, folder) in fake.state()["dashboards"].items():
        assert folder == "lingtan"
        assert dash == on_disk[uid]  # pushed exactly as in git


def test_push_twice_gives_the_same_end_state(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    push(url, TOKEN, "http://influxdb:8086", "lingtan", DASHBOARD_DIR)
    first = json.dumps(fake.state(), sort_keys=True)
    n = len(fake.requests)
    again = push(url, TOKEN, "http://influxdb:8086", "lingtan", DASHBOARD_DIR)
    assert again.datasource == "updated" and again.folder == "existing"
    second_calls = [(m, p) for m, p, _ in fake.requests[n:]]
    assert second_calls[:3] == [
        ("GET", "/api/datasources/uid/lingtan-influx"),
        ("PUT", "/api/datasources/uid/lingtan-influx"),
        ("GET", "/api/folders/lingtan"),
    ]
    assert json.dumps(fake.state(), sort_keys=True) == first
    assert {d["version"] for d in fake.dashboards.values()} == {2}


def test_push_updates_a_changed_datasource(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    push(url, TOKEN, "http://old:8086", "old", DASHBOARD_DIR)
    push(url, TOKEN, "http://influxdb:8086", "lingtan", DASHBOARD_DIR, influx_token="secret")
    ds = fake.datasources["lingtan-influx"]
    assert ds["url"] == "http://influxdb:8086" and ds["jsonData"]["dbName"] == "lingtan"
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"] == {"httpHeaderValue1": "Token secret"}
    assert len(fake.datasources) == 1


def test_push_with_basic_auth_in_the_url(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    fake.auth = "Basic " + base64.b64encode(b"admin:pw").decode()
    result = push(url.replace("http://", "http://admin:pw@"), None, "http://i:8086", "db")
    assert len(result.dashboards) == 3  # default directory: ./dashboards of the repo


def test_cli_push_and_a_refused_token(
    grafana: tuple[FakeGrafana, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    fake, url = grafana
    monkeypatch.chdir(tmp_path)  # no .env / lingtan.toml of the developer's
    for var in ("LINGTAN_INFLUX_URL", "LINGTAN_INFLUX_DB", "LINGTAN_INFLUX_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    args = ["dashboards", "push", "--grafana-url", url, "--dir", str(DASHBOARD_DIR)]
    assert main([*args, "--token", TOKEN, "--influx-db", "parks"]) == 0
    out = capsys.readouterr().out
    assert "datasource lingtan-influx created" in out
    assert "dashboard lingtan-carbon pushed" in out
    ds = fake.datasources["lingtan-influx"]
    assert ds["url"] == "http://influxdb:8086" and ds["jsonData"]["dbName"] == "parks"

    assert main([*args, "--token", "wrong"]) == 1
    assert "Unauthorized" in capsys.readouterr().err


def test_cli_reports_an_unreachable_grafana(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fixtures.influx import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert main(["dashboards", "push", "--grafana-url", url, "--token", TOKEN]) == 1
    assert "lingtan dashboards push:" in capsys.readouterr().err


def test_pushed_datasource_matches_the_provisioned_one() -> None:
    import yaml

    from tests.test_dashboards_macros import PROVISIONING_DIR

    doc = yaml.safe_load((PROVISIONING_DIR / "datasources" / "lingtan.yaml").read_text())
    (provisioned,) = doc["datasources"]
    pushed = datasource_body("http://influxdb:8086", "lingtan")
    for key in ("uid", "name", "type", "access", "url", "isDefault"):
        assert pushed[key] == provisioned[key], key
    assert pushed["jsonData"] == {**provisioned["jsonData"], "dbName": "lingtan"}
