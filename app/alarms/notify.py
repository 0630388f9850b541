"""Delivery of alarm notifications: webhook bodies (generic JSON, DingTalk, WeCom, Feishu
robots), e-mail over SMTP, and the retry schedule. Body builders are pure; `deliver` does I/O.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from app.alarms import templates
from app.alarms.store import AlarmRecord
from app.registry.alarm_settings import Channel, Lang

#: attempts before a notification is given up (`failed` in the outbox)
MAX_ATTEMPTS = 12
#: backoff of the first retry; doubled per attempt, at most BACKOFF_MAX_S
BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 600.0


class DeliveryError(Exception):
    """The channel did not take the notification (retried with backoff)."""


def retry_at(now: datetime, attempts_done: int, base_s: float = BACKOFF_BASE_S) -> datetime | None:
    """When to try again after `attempts_done` failed attempts (None: give up)."""
    if attempts_done >= MAX_ATTEMPTS:
        return None
    return now + timedelta(seconds=min(BACKOFF_MAX_S, base_s * 2 ** (attempts_done - 1)))


def texts(alarm: AlarmRecord, event: str, lang: str) -> tuple[str, str]:
    """(title, body) of a notification in `lang`."""
    lg: Lang = "zh" if lang == "zh" else "en"
    title = templates.title(event, alarm.park, alarm.rule, lg)
    when = (alarm.resolved_at if event == "resolved" else alarm.fired_at) or alarm.fired_at
    body = templates.describe(alarm.rule, alarm.params, lg)
    label = {"zh": ("对象", "时间", "编号"), "en": ("subject", "at", "alarm")}[lg]
    lines = [
        body,
        f"{label[0]}: {alarm.subject} · {alarm.severity}",
        f"{label[1]}: {when.isoformat()}",
        f"{label[2]}: #{alarm.id}",
    ]
    return title, "\n".join(lines)


def webhook_body(channel: Channel, alarm: AlarmRecord, event: str) -> dict[str, Any]:
    """The JSON posted to a webhook channel, in the format of its kind."""
    title, body = texts(alarm, event, channel.lang)
    if channel.kind == "dingtalk":
        md = f"### {title}\n\n" + "\n\n".join(body.splitlines())
        return {"msgtype": "markdown", "markdown": {"title": title, "text": md}}
    if channel.kind == "wecom":
        md = f"**{title}**\n" + "\n".join(f"> {line}" for line in body.splitlines())
        return {"msgtype": "markdown", "markdown": {"content": md}}
    if channel.kind == "feishu":
        return {"msg_type": "text", "content": {"text": f"{title}\n{body}"}}
    return {
        "version": "1",
        "event": event,
        "title": title,
        "text": body,
        "alarm": alarm.model_dump(mode="json"),
    }


def _robot_ok(kind: str, response: httpx.Response) -> None:
    """Robots answer 200 with an error code in the body; a non-zero code is a failure."""
    if kind not in ("dingtalk", "wecom", "feishu"):
        return
    try:
        doc = response.json()
    except ValueError:
        return
    if not isinstance(doc, dict):
        return
    code = doc.get("errcode", doc.get("code", doc.get("StatusCode", 0)))
    if code not in (0, None):
        msg = doc.get("errmsg") or doc.get("msg") or doc.get("StatusMessage") or ""
        raise DeliveryError(f"{kind} robot refused: {code} {msg}")


async def post_webhook(
    client: httpx.AsyncClient, channel: Channel, alarm: AlarmRecord, event: str
) -> None:
    if not channel.url:
        raise DeliveryError(f"{channel.kind} channel without a url")
    try:
        response = await client.post(channel.url, json=webhook_body(channel, alarm, event))
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code >= 300:
        raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")
    _robot_ok(channel.kind, response)


def email_message(channel: Channel, alarm: AlarmRecord, event: str, sender: str) -> EmailMessage:
    title, body = texts(alarm, event, channel.lang)
    msg = EmailMessage()
    msg["Subject"] = title
    msg["From"] = sender
    msg["To"] = ", ".join(channel.to)
    msg.set_content(body)
    return msg


def _send_smtp(smtp_url: str, msg: EmailMessage, timeout_s: float) -> None:
    """`smtp://[user:pass@]host[:port][?starttls=1]` or `smtps://...` (implicit TLS)."""
    url = urlsplit(smtp_url)
    host = url.hostname or "127.0.0.1"
    if url.scheme == "smtps":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            host, url.port or 465, timeout=timeout_s, context=ssl.create_default_context()
        )
    elif url.scheme == "smtp":
        smtp = smtplib.SMTP(host, url.port or 25, timeout=timeout_s)
    else:
        raise DeliveryError(f"LINGTAN_SMTP_URL must be smtp:// or smtps://, not {url.scheme!r}")
    with smtp:
        if parse_qs(url.query).get("starttls") == ["1"]:
            smtp.starttls(context=ssl.create_default_context())
        if url.username:
            smtp.login(unquote(url.username), unquote(url.password or ""))
        smtp.send_message(msg)


async def send_email(
    smtp_url: str | None,
    sender: str,
    channel: Channel,
    alarm: AlarmRecord,
    event: str,
    timeout_s: float = 10.0,
) -> None:
    if not smtp_url:
        raise DeliveryError("e-mail channel but no LINGTAN_SMTP_URL configured")
    if not channel.to:
        raise DeliveryError("e-mail channel without recipients ('to')")
    msg = email_message(channel, alarm, event, sender)
    try:
        await asyncio.to_thread(_send_smtp, smtp_url, msg, timeout_s)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP: {exc}") from exc


async def deliver(
    client: httpx.AsyncClient,
    channel: Channel,
    alarm: AlarmRecord,
    event: str,
    *,
    smtp_url: str | None = None,
    smtp_from: str = "lingtan@localhost",
) -> None:
    """Send one notification; DeliveryError if the channel did not take it."""
    if channel.kind == "email":
        await send_email(smtp_url, smtp_from, channel, alarm, event)
    else:
        await post_webhook(client, channel, alarm, event)
