"""`lingtan dashboards push`: upsert the InfluxDB datasource, the folder and every dashboard."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

#: The uid every panel's datasource refers to (also in dashboards/provisioning/datasources).
DATASOURCE_UID = "lingtan-influx"
DATASOURCE_NAME = "Lingtan InfluxDB"
#: The folder the file provisioning uses too, so both ways end in the same place.
FOLDER_UID = "lingtan"
FOLDER_TITLE = "Lingtan"
PUSH_MESSAGE = "lingtan dashboards push"


def default_dashboards_dir() -> Path:
    """`./dashboards` when it exists, else the one next to this source tree (editable install)."""
    cwd = Path("dashboards")
    if cwd.is_dir():
        return cwd
    return Path(__file__).resolve().parents[2] / "dashboards"


def load_dashboards(directory: Path) -> list[dict[str, Any]]:
    """Every `*.json` dashboard in `directory` (not recursive), sorted by file name."""
    files = sorted(directory.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no dashboard JSON in {directory}")
    out: list[dict[str, Any]] = []
    for path in files:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not doc.get("uid"):
            raise ValueError(f"{path}: not a dashboard with a uid")
        out.append(doc)
    return out


def datasource_body(
    influx_url: str,
    database: str,
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """Grafana's datasource JSON for InfluxQL on `influx_url` (as Grafana reaches it)."""
    body: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "influxdb",
        "access": "proxy",
        "url": influx_url,
        "database": database,
        "isDefault": True,
        "jsonData": {"dbName": database, "httpMode": "POST", "timeInterval": "15s"},
    }
    secure: dict[str, str] = {}
    if token:
        # InfluxDB 2.x/3.x v1 API: the token as a header (InfluxQL mode has no token field)
        body["jsonData"]["httpHeaderName1"] = "Authorization"
        secure["httpHeaderValue1"] = f"Token {token}"
    elif username:
        body["user"] = username
        secure["password"] = password or ""
    if secure:
        body["secureJsonData"] = secure
    return body


@dataclass
class PushResult:
    """What `push` did, for the CLI to print."""

    datasource: Literal["created", "updated"]
    folder: Literal["created", "existing"]
    dashboards: list[str] = field(default_factory=list)


def _status(exc: GrafanaClientError) -> int:
    return int(getattr(exc, "status_code", 0) or 0)


def push(
    grafana_url: str,
    token: str | None,
    influx_url: str,
    database: str,
    directory: Path | None = None,
    *,
    influx_token: str | None = None,
    influx_username: str | None = None,
    influx_password: str | None = None,
    timeout_s: float = 10.0,
) -> PushResult:
    """Upsert datasource, folder and dashboards; running it again gives the same end state.

    `token` is a Grafana service-account token; without it, `user:pass@` in `grafana_url`
    is used as basic auth. Raises `grafana_client.client.GrafanaException` on API errors.
    """
    dashboards = load_dashboards(directory or default_dashboards_dir())
    api = GrafanaApi.from_url(grafana_url, credential=token or None, timeout=timeout_s)
    ds = datasource_body(
        influx_url,
        database,
        token=influx_token,
        username=influx_username,
        password=influx_password,
    )
    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as exc:
        if _status(exc) != 404:
            raise
        api.datasource.create_datasource(ds)
        ds_state: Literal["created", "updated"] = "created"
    else:
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, ds)
        ds_state = "updated"

    try:
        api.folder.get_folder(FOLDER_UID)
        folder_state: Literal["created", "existing"] = "existing"
    except GrafanaClientError as exc:
        if _status(exc) != 404:
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        folder_state = "created"

    result = PushResult(datasource=ds_state, folder=folder_state)
    for doc in dashboards:
        dashboard = copy.deepcopy(doc)
        # a numeric id belongs to one Grafana instance; the uid identifies the dashboard
        dashboard.pop("id", None)
        api.dashboard.update_dashboard(
            {
                "dashboard": dashboard,
                "folderUid": FOLDER_UID,
                "overwrite": True,
                "message": PUSH_MESSAGE,
            }
        )
        result.dashboards.append(str(dashboard["uid"]))
    return result
