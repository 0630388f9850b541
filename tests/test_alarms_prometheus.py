"""The shipped Prometheus rules and Alertmanager config: `promtool check/test rules`,
`amtool check-config`, and a real Prometheus scraping a real `lingtan api` whose meter goes
silent, with a real Alertmanager posting to the test's webhook."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from collectors.mqtt import GmqttPublisher, MqttEndpoint
from tests.alarm_support import Receiver, children, serving, start  # noqa: F401
from tests.fixtures.mosquitto import MosquittoServer, free_port
from tests.ingest_support import topic, wait_for

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "prometheus" / "alerts.yml"
AM_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not installed (Debian prometheus / prometheus-alertmanager): .ci/run")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    checked = run(tool("promtool"), "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout
    tested = run(tool("promtool"), "test", "rules", "prometheus/alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = run(tool("promtool"), "check", "config", "prometheus/prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The rule tests are not vacuous: with the offline grace check off by one scrape, the
    test at 105 s must fail."""
    broken = RULES.read_text().replace(
        'lingtan_alarm_threshold{rule="device_offline"}',
        '(lingtan_alarm_threshold{rule="device_offline"} - 15)',
    )
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(ROOT / "prometheus" / "alerts_test.yml", tmp_path / "alerts_test.yml")
    tested = subprocess.run(
        [tool("promtool"), "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert tested.returncode != 0
    assert "LingtanDeviceOffline" in tested.stdout + tested.stderr


def test_amtool_accepts_the_alertmanager_config() -> None:
    checked = run(tool("amtool"), "check-config", str(AM_CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_mounts_the_shipped_files() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    prom = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prom
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom
    am = compose["services"]["alertmanager"]["volumes"]
    assert "./alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in am
    scrape = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in scrape["scrape_configs"]
    }
    assert targets == {"lingtan-api": ["api:8000"], "lingtan-collector": ["collector:9108"]}


PARKS = """
parks:
  - id: p1
    timezone: Asia/Shanghai
    grid_region: northeast
    devices:
      - {id: grid-main, role: grid}
      - {id: m1, role: load, included_in: grid-main}
    alarms:
      offline_grace_s: 2
"""


async def test_prometheus_and_alertmanager_raise_a_silent_meter(
    mosquitto: MosquittoServer,
    tmp_path: Path,
    children: list,  # noqa: F811
) -> None:
    receiver = Receiver()
    receiver.start()
    parks = tmp_path / "parks.yaml"
    parks.write_text(PARKS)
    api_port, prom_port, am_port = free_port(), free_port(), free_port()
    children.append(
        start(
            "api",
            {
                "LINGTAN_MQTT_URL": mosquitto.url,
                "LINGTAN_PARKS": str(parks),
                "LINGTAN_DATA_DIR": str(tmp_path / "api"),
                "LINGTAN_API_PORT": str(api_port),
                "LINGTAN_ALARM_TICK_S": "0.5",
            },
            tmp_path / "api.log",
        )
    )
    # the shipped Alertmanager config, pointed at the test's receiver
    am = yaml.safe_load(AM_CONFIG.read_text())
    am["receivers"][0]["webhook_configs"][0]["url"] = receiver.url
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am))
    # the shipped rules, scraped and evaluated every second
    shutil.copy(RULES, tmp_path / "alerts.yml")
    prom_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
        },
        "scrape_configs": [
            {"job_name": "lingtan-api", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
    with (tmp_path / "alertmanager.log").open("wb") as log:
        children.append(
            subprocess.Popen(
                [
                    tool("prometheus-alertmanager"),
                    f"--config.file={tmp_path / 'alertmanager.yml'}",
                    f"--storage.path={tmp_path / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    with (tmp_path / "prometheus.log").open("wb") as log:
        children.append(
            subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    pub = GmqttPublisher(MqttEndpoint.parse(mosquitto.url))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=5) as api:
            await wait_for(lambda: serving(api), timeout_s=60, what="API up")
        await asyncio.sleep(1.0)
        await pub.connect()
        kwh = [100.0]

        async def report(devices: tuple[str, ...], seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                kwh[0] += 0.5
                for device in devices:
                    body = {"ts": round(time.time(), 3), "energy_import_kwh": kwh[0]}
                    await pub.publish(topic(device), json.dumps(body).encode(), qos=1)
                await asyncio.sleep(1.0)

        # both meters report every second (a 1 s cadence is learned); then m1 falls silent
        # while grid-main carries on
        grid = asyncio.create_task(report(("grid-main",), 600))
        await report(("m1",), 8)
        silent_from = time.time()

        def offline_alerts() -> list[dict[str, object]]:
            return [
                alert
                for body in receiver.bodies
                for alert in body.get("alerts", [])
                if alert["labels"].get("alertname") == "LingtanDeviceOffline"
            ]

        await wait_for(lambda: bool(offline_alerts()), timeout_s=90, what="Alertmanager webhook")
        print(f"Alertmanager posted {time.time() - silent_from:.1f} s after m1 went silent")
        (alert,) = offline_alerts()
        assert alert["status"] == "firing"
        labels = alert["labels"]
        assert isinstance(labels, dict)
        assert (labels["park"], labels["device"], labels["severity"]) == ("p1", "m1", "critical")
        assert receiver.bodies[0]["receiver"] == "park-operators"
        grid.cancel()
    finally:
        await pub.close()
        receiver.stop()
