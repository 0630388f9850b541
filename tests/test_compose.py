"""docker-compose.yml, Dockerfile and .env.example agree with each other and with the repo."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
# ${VAR}, ${VAR:-default}, ${VAR:?message}, ${VAR-default}
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _env_example() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in ENV_EXAMPLE.splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise AssertionError(f"{name} is mandatory: {arg}")
        return arg or ""

    return INTERPOLATION.sub(sub, text)


def test_services_images_and_commands() -> None:
    s = COMPOSE["services"]
    assert set(s) == {
        "mosquitto",
        "influxdb",
        "grafana",
        "collector",
        "api",
        "prometheus",
        "alertmanager",
    }
    assert s["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert s["influxdb"]["image"] == "influxdb:1.8"
    assert s["grafana"]["image"].startswith("grafana/grafana")
    assert s["collector"]["command"] == ["lingtan", "collect"]
    assert s["api"]["command"] == ["lingtan", "api"]
    # one image for both: built once by the collector service, reused by the api
    assert s["collector"]["build"] == "."
    assert s["collector"]["image"] == s["api"]["image"]
    for name, svc in s.items():
        assert "test" in svc["healthcheck"], name


def test_mosquitto_config_directory_is_mounted_whole() -> None:
    vols = COMPOSE["services"]["mosquitto"]["volumes"]
    assert "./mosquitto:/mosquitto/config" in vols
    conf = (ROOT / "mosquitto" / "mosquitto.conf").read_text()
    # the files the broker needs live in the mounted directory
    assert "password_file /mosquitto/config/passwd" in conf
    assert "acl_file /mosquitto/config/acl" in conf
    assert "persistence_location /mosquitto/data/" in conf
    assert any(v.endswith(":/mosquitto/data") for v in vols)


def test_every_bind_mount_exists_and_named_volumes_are_declared() -> None:
    text = _interpolate(COMPOSE_TEXT, _env_example())
    services = yaml.safe_load(text)["services"]
    declared = set(COMPOSE["volumes"])
    binds = 0
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith((".", "/")):
                binds += 1
                assert (ROOT / source).exists(), f"{name}: {source} missing in the repo"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
    assert binds >= 5


def test_env_example_documents_every_variable() -> None:
    example = _env_example()
    referenced = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE_TEXT)}
    # every ${VAR} compose interpolates has a line in .env.example
    assert referenced - set(example) == set()
    # every LINGTAN_* a container gets is at least mentioned there
    for name in ("collector", "api"):
        env = COMPOSE["services"][name]["environment"]
        for key in env:
            assert key in ENV_EXAMPLE, f"{name}: {key} not in .env.example"
    # and nothing in .env.example is dead
    assert set(example) - referenced == set()


def test_mandatory_values_fail_loudly_without_env() -> None:
    with pytest.raises(AssertionError, match="LINGTAN_MQTT_URL is mandatory"):
        _interpolate(COMPOSE_TEXT, {})


def test_dockerfile_installs_the_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.splitlines()[1] == "FROM python:3.11-slim"
    assert "RUN pip install ." in text
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        # like a missing influxd: a skipped check would read as a passed one
        pytest.fail("neither docker-compose nor docker compose installed: run .ci/run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINGTAN_", "GRAFANA_"))}
    # `config` only parses and interpolates: no Docker engine is needed (and none is used)
    ok = subprocess.run(
        [*cli, "--env-file", ".env.example", "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = subprocess.run(
        [*cli, "--env-file", str(empty), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert "LINGTAN_MQTT_URL" in missing.stderr or "GRAFANA_ADMIN_PASSWORD" in missing.stderr
