"""Notification bodies (generic JSON, DingTalk, WeCom, Feishu), robot error codes, the retry
schedule, and e-mail through a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.header
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from app.alarms.notify import DeliveryError, deliver, retry_at, webhook_body
from app.alarms.store import AlarmRecord
from app.registry.alarm_settings import Channel
from tests.alarm_support import Receiver
from tests.fixtures.mosquitto import free_port

FIRED = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
ALARM = AlarmRecord(
    id=7,
    park="demo",
    rule="device_offline",
    subject="m1",
    severity="critical",
    state="firing",
    value=106.0,
    threshold=105.0,
    params={"device": "m1", "silent_s": 106, "cadence_s": 60},
    message={"zh": "", "en": ""},
    fired_at=FIRED,
    acked_at=None,
    acked_by=None,
    ack_reason=None,
    resolved_at=None,
)
EN_BODY = (
    "device m1 silent for 106 s (reports every 60 s)\n"
    "subject: m1 · critical\n"
    "at: 2026-06-01T08:00:00+00:00\n"
    "alarm: #7"
)
ZH_BODY = (
    "设备 m1 已 106 秒无数据（上报周期约 60 秒）\n"
    "对象: m1 · critical\n"
    "时间: 2026-06-01T08:00:00+00:00\n"
    "编号: #7"
)


def test_robot_formats() -> None:
    ding = webhook_body(Channel(kind="dingtalk", url="http://127.0.0.1:1/robot"), ALARM, "firing")
    assert ding == {
        "msgtype": "markdown",
        "markdown": {
            "title": "[告警] demo · device_offline",
            "text": "### [告警] demo · device_offline\n\n" + ZH_BODY.replace("\n", "\n\n"),
        },
    }
    wecom = webhook_body(
        Channel(kind="wecom", url="http://127.0.0.1:1/robot", lang="en"), ALARM, "resolved"
    )
    assert wecom == {
        "msgtype": "markdown",
        "markdown": {
            "content": "**[RESOLVED] demo · device_offline**\n"
            + "\n".join("> " + line for line in EN_BODY.splitlines())
        },
    }
    feishu = webhook_body(Channel(kind="feishu", url="http://127.0.0.1:1/robot"), ALARM, "repeat")
    assert feishu == {
        "msg_type": "text",
        "content": {"text": "[告警（仍未恢复）] demo · device_offline\n" + ZH_BODY},
    }
    generic = webhook_body(
        Channel(kind="webhook", url="http://127.0.0.1:1/robot", lang="en"), ALARM, "firing"
    )
    assert generic["event"] == "firing" and generic["text"] == EN_BODY
    assert generic["alarm"]["id"] == 7 and generic["alarm"]["fired_at"] == "2026-06-01T08:00:00Z"


def test_retry_schedule_doubles_then_gives_up() -> None:
    delays = [(retry_at(FIRED, n, 5.0) or FIRED) - FIRED for n in range(1, 12)]
    assert delays[:4] == [timedelta(seconds=s) for s in (5, 10, 20, 40)]
    assert delays[-1] == timedelta(seconds=600)  # capped
    assert retry_at(FIRED, 12, 5.0) is None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


async def test_webhook_delivery_and_failures(receiver: Receiver) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        await deliver(client, Channel(kind="feishu", url=receiver.url), ALARM, "firing")
        assert receiver.bodies[0]["msg_type"] == "text"
        receiver.stop()
        with pytest.raises(DeliveryError, match="Connect"):
            await deliver(client, Channel(kind="webhook", url=receiver.url), ALARM, "firing")


async def test_robot_error_code_is_a_failure() -> None:
    """DingTalk answers HTTP 200 with an error code in the body: a local server says that."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = json.dumps({"errcode": 310000, "errmsg": "keywords not in content"}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            channel = Channel(kind="dingtalk", url=f"http://127.0.0.1:{port}/robot/send")
            with pytest.raises(DeliveryError, match="310000 keywords not in content"):
                await deliver(client, channel, ALARM, "firing")
    finally:
        srv.shutdown()
        srv.server_close()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


async def test_email_through_a_local_smtp_server() -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        channel = Channel(kind="email", to=("ops@example.com", "lead@example.com"), lang="zh")
        async with httpx.AsyncClient() as client:
            await deliver(
                client,
                channel,
                ALARM,
                "firing",
                smtp_url=f"smtp://127.0.0.1:{port}",
                smtp_from="lingtan@park.example",
            )
            with pytest.raises(DeliveryError, match="LINGTAN_SMTP_URL"):
                await deliver(client, channel, ALARM, "firing", smtp_url=None)
    finally:
        controller.stop()
    ((sender, rcpts, msg),) = inbox.messages
    assert sender == "lingtan@park.example"
    assert rcpts == ["ops@example.com", "lead@example.com"]
    subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
    assert subject == "[告警] demo · device_offline"
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert payload.decode("utf-8").strip().splitlines() == ZH_BODY.splitlines()
