"""Alarm tables in the ledger database: the alarm log, its notification outbox, the engine lease.

They live on the ledger store's metadata (`app.ledgers.orm.Base`), so the same engine, the
same SQLite/PostgreSQL handling and the same audit chain apply.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Double, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.ledgers.orm import Base, UTCDateTime


class AlarmRow(Base):
    """One alarm from firing to resolved. States: firing → acknowledged → resolved."""

    __tablename__ = "alarms"
    __table_args__ = (Index("ix_alarms_park_fired", "park", "fired_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    park: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    #: "park|rule|subject" while the alarm is open, NULL once resolved. Unique: two API
    #: replicas cannot both open the same alarm (NULLs never collide).
    open_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    value: Mapped[float | None] = mapped_column(Double())
    threshold: Mapped[float | None] = mapped_column(Double())
    params: Mapped[str] = mapped_column(Text)  # canonical JSON (message parameters)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    acked_by: Mapped[str | None] = mapped_column(String(128), default=None)
    ack_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    #: last time a notification of this alarm was queued (for the repeat interval)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class AlarmNotificationRow(Base):
    """Outbox: one row per (alarm event, channel), retried with backoff until delivered."""

    __tablename__ = "alarm_notifications"
    __table_args__ = (Index("ix_alarm_notifications_due", "status", "next_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(Integer, index=True)
    event: Mapped[str] = mapped_column(String(16))  # firing, repeat, resolved
    channel: Mapped[str] = mapped_column(Text)  # the channel's canonical JSON
    status: Mapped[str] = mapped_column(String(16))  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)


class AlarmLeaseRow(Base):
    """Who runs the alarm engine: one holder at a time across API replicas."""

    __tablename__ = "alarm_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
