"""Grafana dashboards: load the JSON in `dashboards/` and push it with its datasource to Grafana."""

from app.dashboards.push import (
    DATASOURCE_UID,
    FOLDER_UID,
    PushResult,
    datasource_body,
    default_dashboards_dir,
    load_dashboards,
    push,
)

__all__ = [
    "DATASOURCE_UID",
    "FOLDER_UID",
    "PushResult",
    "datasource_body",
    "default_dashboards_dir",
    "load_dashboards",
    "push",
]
