"""Broker users and per-park ACLs (`collectors.gateways`) against a real Mosquitto."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collectors.gateways import (
    AuthConfigError,
    BrokerAuth,
    hash_password,
    read_entries,
    set_user,
    verify_password,
)
from collectors.gateways.acl import BEGIN, END
from collectors.gateways.cli import register
from collectors.mqtt import GmqttSubscriber, MqttEndpoint
from tests.fixtures.mosquitto import SHIPPED_CONF, MosquittoServer

pytestmark = pytest.mark.timeout(60)

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
PW_A = "park-a-gateway-secret"
PW_B = "park-b-gateway-secret"
PW_COLLECTOR = "collector-secret-123"


# --- password file format -----------------------------------------------------------------


def test_our_hash_equals_mosquitto_passwd_for_the_same_salt(tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    pwfile.touch()
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(pwfile), "alice", "s3cret-pass"], check=True)
    field = read_entries(pwfile)["alice"]
    _, kind, iterations, salt_b64, _ = field.split("$")
    assert kind == "7"
    import base64

    salt = base64.b64decode(salt_b64)
    assert hash_password("s3cret-pass", iterations=int(iterations), salt=salt) == field
    assert verify_password("s3cret-pass", field)
    assert not verify_password("s3cret-pasS", field)


def test_verify_reads_mosquitto_sha512_entries(tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    pwfile.touch()
    subprocess.run(
        [MOSQUITTO_PASSWD, "-H", "sha512", "-b", str(pwfile), "old", "legacy-password"], check=True
    )
    field = read_entries(pwfile)["old"]
    assert field.startswith("$6$")
    assert verify_password("legacy-password", field)
    assert not verify_password("legacy-passwore", field)


def test_set_user_keeps_other_users_and_refuses_bad_names(tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    pwfile.touch()
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(pwfile), "ops", "ops-password-1"], check=True)
    ops_line = pwfile.read_text().strip()
    set_user(pwfile, "gw-a", "first-password-1")
    set_user(pwfile, "gw-a", "second-password-2")  # replaces, does not duplicate
    lines = pwfile.read_text().splitlines()
    assert lines[0] == ops_line
    assert [line.split(":")[0] for line in lines] == ["ops", "gw-a"]
    assert verify_password("second-password-2", read_entries(pwfile)["gw-a"])
    assert not verify_password("first-password-1", read_entries(pwfile)["gw-a"])
    for bad in ["", "a:b", "with space", "new\nline", "wild+card", "wild#", "x" * 65, "a/b"]:
        with pytest.raises(AuthConfigError):
            set_user(pwfile, bad, "long-enough-password")
    with pytest.raises(ValueError, match="too short"):
        set_user(pwfile, "gw-b", "short")
    assert [line.split(":")[0] for line in pwfile.read_text().splitlines()] == ["ops", "gw-a"]
    assert [p.name for p in tmp_path.iterdir()] == ["passwd"]  # no temp files left behind


def test_rewrite_keeps_file_mode(tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    set_user(pwfile, "gw-a", "first-password-1")
    assert pwfile.stat().st_mode & 0o777 == 0o640  # new file: not world-readable
    os.chmod(pwfile, 0o600)
    set_user(pwfile, "gw-b", "second-password-2")
    assert pwfile.stat().st_mode & 0o777 == 0o600


# --- ACL file -------------------------------------------------------------------------------


def test_acl_rules_and_hand_written_rules_survive(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("# ops monitoring\nuser ops\ntopic read $SYS/#\n")
    auth = BrokerAuth(tmp_path)
    auth.add_collector(password=PW_COLLECTOR)
    auth.add_gateway("park-a", password=PW_A)
    auth.add_gateway("park-b", "b-second", password=PW_B)
    text = acl.read_text()
    assert text.startswith("# ops monitoring\nuser ops\ntopic read $SYS/#\n\n" + BEGIN)
    assert text.rstrip().endswith(END)
    blocks = _user_blocks(text)
    assert blocks == {
        "ops": ["topic read $SYS/#"],
        "lingtan-collector": [
            "topic read lingtan/#",
            "topic read $share/+/lingtan/#",
        ],
        "gw-park-a": ["topic write lingtan/v1/park-a/#"],
        "b-second": ["topic write lingtan/v1/park-b/#"],
    }
    auth.remove("gw-park-a")
    assert "gw-park-a" not in _user_blocks(acl.read_text())
    assert _user_blocks(acl.read_text())["ops"] == ["topic read $SYS/#"]
    assert "gw-park-a" not in read_entries(tmp_path / "passwd")


def test_existing_user_needs_rotate_and_keeps_its_park(tmp_path: Path) -> None:
    auth = BrokerAuth(tmp_path)
    auth.add_gateway("park-a", password=PW_A)
    with pytest.raises(AuthConfigError, match="--rotate"):
        auth.add_gateway("park-a", password=PW_B)
    with pytest.raises(AuthConfigError, match="remove it before"):
        auth.add_gateway("park-b", "gw-park-a", password=PW_B, rotate=True)
    with pytest.raises(AuthConfigError, match="remove it before"):
        auth.add_collector("gw-park-a", password=PW_B, rotate=True)
    issued = auth.add_gateway("park-a", rotate=True)
    assert issued.generated and issued.password != PW_A
    assert verify_password(issued.password, read_entries(tmp_path / "passwd")["gw-park-a"])
    with pytest.raises(AuthConfigError, match="no managed user"):
        auth.remove("nobody")


# --- CLI ------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lingtan")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_prints_generated_password_once_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path / "conf")
    assert _cli(["gateways", "add", "park-a", "--dir", d]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("password:"))
    password = line.split()[-1]
    assert len(password) >= 32
    assert "kill -s HUP mosquitto" in out
    for name in ["passwd", "acl", "gateways.json"]:
        assert password not in (tmp_path / "conf" / name).read_text()
    assert verify_password(password, read_entries(tmp_path / "conf" / "passwd")["gw-park-a"])

    assert _cli(["gateways", "add", "park-a", "--dir", d]) == 2  # exists, no --rotate
    assert "--rotate" in capsys.readouterr().err
    assert _cli(["gateways", "add", "bad/park", "--dir", d]) == 2
    assert _cli(["gateways", "list", "--dir", d]) == 0
    listing = capsys.readouterr().out
    assert "gw-park-a" in listing and "lingtan/v1/park-a/#" in listing
    assert password not in listing
    assert _cli(["gateways", "remove", "gw-park-a", "--dir", d]) == 0
    assert "gw-park-a" not in read_entries(tmp_path / "conf" / "passwd")


def test_cli_checks_park_against_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "parks.yaml"
    registry.write_text(
        "parks:\n  - id: park-a\n    name: A\n    timezone: Asia/Shanghai\n"
        "    grid_region: northeast\n    factor_set: cn-2023\n"
        "    devices:\n      - {id: grid-main, role: grid}\n"
    )
    d = str(tmp_path / "conf")
    assert _cli(["gateways", "add", "park-z", "--parks", str(registry), "--dir", d]) == 2
    assert "not in" in capsys.readouterr().err
    assert _cli(["gateways", "add", "park-a", "--parks", str(registry), "--dir", d]) == 0
    args = ["gateways", "add", "park-z", "--parks", str(registry), "--force", "--dir", d]
    assert _cli(args) == 0


def test_cli_help_for_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ["add", "collector", "remove", "list", "sync"]:
        with pytest.raises(SystemExit) as exc:
            _cli(["gateways", sub, "--help"])
        assert exc.value.code == 0
        assert "--dir" in capsys.readouterr().out


# --- shipped configuration -------------------------------------------------------------------


def test_shipped_config_requires_login_and_uses_the_mounted_files() -> None:
    lines = [line.strip() for line in SHIPPED_CONF.read_text().splitlines()]
    assert "allow_anonymous false" in lines
    assert "password_file /mosquitto/config/passwd" in lines
    assert "acl_file /mosquitto/config/acl" in lines
    assert "max_queued_messages 1000000" in lines  # the queue sizing is untouched


# --- against a real broker --------------------------------------------------------------------


def test_fixture_broker_without_auth_files_stays_anonymous(mosquitto: MosquittoServer) -> None:
    """Other tests use the plain `mosquitto` fixture; the shipped login requirement is lifted."""
    cmd = [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(mosquitto.port), "-V", "mqttv5"]
    result = subprocess.run(
        [*cmd, "-q", "1", "-t", A_TOPIC, "-m", "x"], capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0 and result.stderr == ""


@dataclass
class AuthBroker:
    server: MosquittoServer
    auth: BrokerAuth

    def url(self, user: str, password: str) -> str:
        return f"mqtt://{user}:{password}@127.0.0.1:{self.server.port}"

    def reload(self) -> None:
        assert self.server.proc is not None
        self.server.proc.send_signal(signal.SIGHUP)


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[AuthBroker]:
    conf = tmp_path / "conf"
    auth = BrokerAuth(conf)
    auth.add_collector(password=PW_COLLECTOR)
    auth.add_gateway("park-a", password=PW_A)
    auth.add_gateway("park-b", password=PW_B)
    server = MosquittoServer(
        tmp_path / "mosquitto",
        extra_conf=(
            f"password_file {conf / 'passwd'}\nacl_file {conf / 'acl'}\nallow_anonymous false"
        ),
    )
    server.start()
    try:
        yield AuthBroker(server, auth)
    finally:
        server.stop()


def pub(
    broker: AuthBroker, user: str | None, password: str | None, topic: str, v5: bool = True
) -> subprocess.CompletedProcess[str]:
    """One QoS 1 publish with mosquitto_pub; MQTT 5 reports a refused PUBLISH on stderr."""
    cmd = [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(broker.server.port), "-q", "1"]
    cmd += ["-t", topic, "-m", topic]  # the payload names the topic, to see what arrived
    if user is not None:
        cmd += ["-u", user, "-P", password or ""]
    if v5:
        cmd += ["-V", "mqttv5"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


@contextlib.asynccontextmanager
async def collecting(
    broker: AuthBroker, client_id: str, share_group: str | None = None, topic: str | None = None
) -> AsyncIterator[list[str]]:
    """Subscribe as the collector user; yields the list of payloads received so far."""
    got: list[str] = []

    async def handler(_topic: str, payload: bytes) -> None:
        got.append(payload.decode())

    sub = GmqttSubscriber(
        MqttEndpoint.parse(broker.url("lingtan-collector", PW_COLLECTOR)),
        topic or "lingtan/v1/+/+/telemetry",
        client_id,
        share_group=share_group,
    )
    task = asyncio.create_task(sub.run(handler))
    try:
        await asyncio.wait_for(sub.connected.wait(), timeout=5)
        await asyncio.sleep(0.2)  # the SUBSCRIBE is sent after `connected`; let it settle
        yield got
    finally:
        await sub.stop()
        await asyncio.wait_for(task, timeout=5)


async def wait_for(got: list[str], item: str, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while item not in got:
        assert asyncio.get_running_loop().time() < deadline, f"{item!r} never arrived: {got}"
        await asyncio.sleep(0.02)


A_TOPIC = "lingtan/v1/park-a/m1/telemetry"
B_TOPIC = "lingtan/v1/park-b/m1/telemetry"


async def test_gateway_publishes_only_under_its_own_park(auth_broker: AuthBroker) -> None:
    async with collecting(auth_broker, "c-own-park") as got:
        refused5 = pub(auth_broker, "gw-park-a", PW_A, B_TOPIC)
        assert "Not authorized" in refused5.stderr  # MQTT 5 PUBACK reason 0x87
        refused311 = pub(auth_broker, "gw-park-a", PW_A, B_TOPIC + "/v311", v5=False)
        assert refused311.returncode == 0  # 3.1.1 has no way to say no: dropped silently
        ok = pub(auth_broker, "gw-park-a", PW_A, A_TOPIC)
        assert ok.returncode == 0 and "Not authorized" not in ok.stderr
        # the broker handles these in order, so once park A's message is here, a leaked
        # park B message would already be here too
        await wait_for(got, A_TOPIC)
        await asyncio.sleep(0.2)
        assert got == [A_TOPIC]
        pub(auth_broker, "gw-park-b", PW_B, B_TOPIC)
        await wait_for(got, B_TOPIC)
        assert got == [A_TOPIC, B_TOPIC]


async def test_wrong_password_unknown_user_and_anonymous_cannot_connect(
    auth_broker: AuthBroker,
) -> None:
    for user, password in [("gw-park-a", PW_B), ("gw-park-a", ""), ("nobody", PW_A), (None, None)]:
        result = pub(auth_broker, user, password, A_TOPIC)
        assert result.returncode != 0, (user, result)
        assert "not authori" in result.stderr.lower(), result.stderr


async def test_collector_cannot_publish_and_gateway_cannot_read(auth_broker: AuthBroker) -> None:
    async with collecting(auth_broker, "c-no-pub") as got:
        refused = pub(auth_broker, "lingtan-collector", PW_COLLECTOR, A_TOPIC + "-from-collector")
        assert "Not authorized" in refused.stderr
        pub(auth_broker, "gw-park-a", PW_A, A_TOPIC)
        await wait_for(got, A_TOPIC)
        assert got == [A_TOPIC]

    # a gateway subscribing to everything receives nothing: it has no read rule
    snoop = subprocess.Popen(
        [
            *("mosquitto_sub", "-h", "127.0.0.1", "-p", str(auth_broker.server.port)),
            *("-u", "gw-park-b", "-P", PW_B, "-t", "#", "-V", "mqttv5", "-W", "2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    await asyncio.sleep(0.5)
    pub(auth_broker, "gw-park-a", PW_A, A_TOPIC)
    out, _ = snoop.communicate(timeout=10)
    assert out == ""


async def test_collector_subscribed_to_everything_reads_only_lingtan_topics(
    auth_broker: AuthBroker,
) -> None:
    """Off-filter topics under lingtan/ reach the collector (to be dead-lettered as
    bad_topic); what is outside lingtan/ does not (here the broker's retained $SYS version,
    which a collector allowed `#` would get at once)."""
    async with (
        collecting(auth_broker, "c-all", topic="#") as got,
        collecting(auth_broker, "c-sys", topic="$SYS/broker/version") as sys_topics,
    ):
        pub(auth_broker, "gw-park-a", PW_A, "lingtan/v1/park-a/m1/status")
        pub(auth_broker, "gw-park-a", PW_A, A_TOPIC)
        await wait_for(got, A_TOPIC)
        await asyncio.sleep(0.2)
        assert got == ["lingtan/v1/park-a/m1/status", A_TOPIC]
        assert sys_topics == []


async def test_collector_shared_subscription_receives_telemetry(auth_broker: AuthBroker) -> None:
    async with (
        collecting(auth_broker, "c-shared-1", share_group="collectors") as got1,
        collecting(auth_broker, "c-shared-2", share_group="collectors") as got2,
    ):
        topics = [f"lingtan/v1/park-a/m{i}/telemetry" for i in range(6)]
        for topic in topics:
            pub(auth_broker, "gw-park-a", PW_A, topic)
        deadline = asyncio.get_running_loop().time() + 5
        while len(got1) + len(got2) < len(topics):
            assert asyncio.get_running_loop().time() < deadline, (got1, got2)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        # each message goes to exactly one member of the group
        assert sorted(got1 + got2) == sorted(topics)


async def test_remove_and_sighup_revoke_a_gateway(auth_broker: AuthBroker) -> None:
    async with collecting(auth_broker, "c-revoke") as got:
        pub(auth_broker, "gw-park-a", PW_A, A_TOPIC)
        await wait_for(got, A_TOPIC)

        auth_broker.auth.remove("gw-park-a")
        # files changed but not yet re-read: still allowed
        assert "Not authorized" not in pub(auth_broker, "gw-park-a", PW_A, A_TOPIC).stderr
        auth_broker.reload()
        await asyncio.sleep(0.3)

        result = pub(auth_broker, "gw-park-a", PW_A, A_TOPIC + "/after")
        assert result.returncode != 0 and "not authori" in result.stderr.lower()
        assert "/after" not in "".join(got)
        # the other park and the collector are untouched by the reload
        pub(auth_broker, "gw-park-b", PW_B, B_TOPIC)
        await wait_for(got, B_TOPIC)


async def test_rotated_password_takes_over_after_sighup(auth_broker: AuthBroker) -> None:
    issued = auth_broker.auth.add_gateway("park-a", rotate=True)
    auth_broker.reload()
    await asyncio.sleep(0.3)
    assert pub(auth_broker, "gw-park-a", PW_A, A_TOPIC).returncode != 0
    ok = pub(auth_broker, "gw-park-a", issued.password, A_TOPIC)
    assert ok.returncode == 0 and "Not authorized" not in ok.stderr


def _user_blocks(acl_text: str) -> dict[str, list[str]]:
    """user -> its topic rules, the way Mosquitto groups them (rules follow their user line)."""
    blocks: dict[str, list[str]] = {}
    current: str | None = None
    for raw in acl_text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("user "):
            current = line.removeprefix("user ")
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    return blocks
