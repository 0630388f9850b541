"""AlarmStore: the alarm log, notification outbox and engine lease in the ledger database.

Every state change (fire, acknowledge, resolve) is written with its audit entry in the same
transaction, through the ledger store's audit chain (docs/ledgers.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.alarms import templates
from app.alarms.orm import AlarmLeaseRow, AlarmNotificationRow, AlarmRow
from app.alarms.rules import Breach
from app.ledgers import SYSTEM_ACTOR, LedgerStore, NotFoundError, canonical_json
from app.ledgers.errors import LedgerError
from app.registry.alarm_settings import Channel

AlarmState = Literal["firing", "acknowledged", "resolved"]
OPEN_STATES = ("firing", "acknowledged")


class AlarmStateError(LedgerError):
    """The alarm is not in a state that allows this (acknowledging a resolved one): 409."""


class AlarmRecord(BaseModel):
    """An alarm as the API returns it (times UTC)."""

    id: int
    park: str
    rule: str
    subject: str
    severity: str
    state: AlarmState
    value: float | None
    threshold: float | None
    params: dict[str, Any]
    message: dict[str, str]
    fired_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    ack_reason: str | None
    resolved_at: datetime | None

    @classmethod
    def of(cls, row: AlarmRow) -> AlarmRecord:
        params = json.loads(row.params)
        return cls(
            id=row.id,
            park=row.park,
            rule=row.rule,
            subject=row.subject,
            severity=row.severity,
            state=row.state,  # type: ignore[arg-type]
            value=row.value,
            threshold=row.threshold,
            params=params,
            message={
                "zh": templates.describe(row.rule, params, "zh"),
                "en": templates.describe(row.rule, params, "en"),
            },
            fired_at=row.fired_at,
            acked_at=row.acked_at,
            acked_by=row.acked_by,
            ack_reason=row.ack_reason,
            resolved_at=row.resolved_at,
        )


class Notification(BaseModel):
    """A queued delivery: which alarm event goes to which channel."""

    id: int
    alarm: AlarmRecord
    event: str
    channel: Channel
    attempts: int


def open_key(park: str, rule: str, subject: str) -> str:
    return f"{park}|{rule}|{subject}"


def _now() -> datetime:
    return datetime.now(UTC)


def _for_event(channels: Iterable[Channel], rule: str) -> list[Channel]:
    return [c for c in channels if not c.rules or rule in c.rules]


class AlarmStore:
    """Synchronous (call from a thread pool in async code), like the ledger store it uses."""

    def __init__(self, ledgers: LedgerStore) -> None:
        # its tables come with the ledger database's migrations (app/ledgers/migrations)
        self.ledgers = ledgers

    # -- lease ----------------------------------------------------------------------------

    def acquire_lease(
        self, holder: str, ttl_s: float, name: str = "engine", now: datetime | None = None
    ) -> bool:
        """Take or renew the lease `name` for `ttl_s`; False while another holder has it."""
        now = now or _now()
        expires = now + timedelta(seconds=ttl_s)
        with self.ledgers._write_sessions() as session, session.begin():
            result = session.execute(
                update(AlarmLeaseRow)
                .where(
                    AlarmLeaseRow.name == name,
                    or_(AlarmLeaseRow.holder == holder, AlarmLeaseRow.expires_at < now),
                )
                .values(holder=holder, expires_at=expires)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return True
            if session.get(AlarmLeaseRow, name) is not None:
                return False
            try:
                with session.begin_nested():
                    session.add(AlarmLeaseRow(name=name, holder=holder, expires_at=expires))
            except IntegrityError:
                return False
            return True

    def release_lease(self, holder: str, name: str = "engine") -> None:
        with self.ledgers._write_sessions() as session, session.begin():
            session.execute(
                update(AlarmLeaseRow)
                .where(AlarmLeaseRow.name == name, AlarmLeaseRow.holder == holder)
                .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC))
            )

    # -- the log ----------------------------------------------------------------------------

    def open_alarms(self, park: str | None = None) -> list[AlarmRecord]:
        with self.ledgers._read() as session:
            q = select(AlarmRow).where(AlarmRow.open_key.is_not(None))
            if park is not None:
                q = q.where(AlarmRow.park == park)
            return [AlarmRecord.of(r) for r in session.scalars(q.order_by(AlarmRow.id))]

    def list_alarms(
        self, park: str, *, which: Literal["active", "history", "all"] = "all", limit: int = 500
    ) -> list[AlarmRecord]:
        """Newest first: open alarms (`active`), resolved ones (`history`) or both."""
        with self.ledgers._read() as session:
            q = select(AlarmRow).where(AlarmRow.park == park)
            if which == "active":
                q = q.where(AlarmRow.open_key.is_not(None))
            elif which == "history":
                q = q.where(AlarmRow.open_key.is_(None))
            q = q.order_by(AlarmRow.id.desc()).limit(limit)
            return [AlarmRecord.of(r) for r in session.scalars(q)]

    def get(self, park: str, alarm_id: int) -> AlarmRecord:
        with self.ledgers._read() as session:
            row = session.get(AlarmRow, alarm_id)
            if row is None or row.park != park:
                raise NotFoundError(f"no alarm {alarm_id} in park {park!r}")
            return AlarmRecord.of(row)

    def _queue(
        self,
        session: Session,
        row: AlarmRow,
        event: str,
        channels: Sequence[Channel],
        now: datetime,
    ) -> None:
        for channel in _for_event(channels, row.rule):
            session.add(
                AlarmNotificationRow(
                    alarm_id=row.id,
                    event=event,
                    channel=canonical_json(channel.model_dump(mode="json")),
                    status="pending",
                    attempts=0,
                    next_at=now,
                    created_at=now,
                )
            )
        if channels:
            row.notified_at = now

    def fire(
        self,
        park: str,
        breach: Breach,
        channels: Sequence[Channel] = (),
        now: datetime | None = None,
    ) -> AlarmRecord | None:
        """Open an alarm for `breach` (audited, notifications queued); None if one is open."""
        now = now or _now()
        key = open_key(park, breach.rule, breach.subject)
        params = canonical_json(dict(breach.params))
        try:
            with self.ledgers._write() as session:
                if session.scalar(select(AlarmRow.id).where(AlarmRow.open_key == key)):
                    return None
                row = AlarmRow(
                    park=park,
                    rule=breach.rule,
                    subject=breach.subject,
                    severity=breach.severity,
                    state="firing",
                    open_key=key,
                    value=breach.value,
                    threshold=breach.threshold,
                    params=params,
                    fired_at=now,
                )
                session.add(row)
                session.flush()
                self._queue(session, row, "firing", channels, now)
                self.ledgers._append_audit(
                    session,
                    SYSTEM_ACTOR,
                    "alarm.fire",
                    f"park/{park}/alarm/{row.id}",
                    {
                        "park": park,
                        "rule": breach.rule,
                        "subject": breach.subject,
                        "severity": breach.severity,
                        "value": breach.value,
                        "threshold": breach.threshold,
                    },
                )
                session.flush()
                return AlarmRecord.of(row)
        except IntegrityError:  # another replica opened it in between
            return None

    def resolve(
        self,
        park: str,
        rule: str,
        subject: str,
        channels: Sequence[Channel] = (),
        now: datetime | None = None,
    ) -> AlarmRecord | None:
        """Close the open alarm (audited, notifications queued); None if none is open."""
        now = now or _now()
        with self.ledgers._write() as session:
            row = session.scalar(
                select(AlarmRow).where(AlarmRow.open_key == open_key(park, rule, subject))
            )
            if row is None:
                return None
            row.state = "resolved"
            row.open_key = None
            row.resolved_at = now
            self._queue(session, row, "resolved", channels, now)
            self.ledgers._append_audit(
                session,
                SYSTEM_ACTOR,
                "alarm.resolve",
                f"park/{park}/alarm/{row.id}",
                {"park": park, "rule": rule, "subject": subject},
            )
            session.flush()
            return AlarmRecord.of(row)

    def acknowledge(self, park: str, alarm_id: int, actor: str, reason: str) -> AlarmRecord:
        """firing → acknowledged, with who and why (audited). Repeats stop once acknowledged."""
        with self.ledgers._write() as session:
            row = session.get(AlarmRow, alarm_id)
            if row is None or row.park != park:
                raise NotFoundError(f"no alarm {alarm_id} in park {park!r}")
            if row.state != "firing":
                raise AlarmStateError(f"alarm {alarm_id} is {row.state}, not firing")
            row.state = "acknowledged"
            row.acked_at = _now()
            row.acked_by = actor
            row.ack_reason = reason
            self.ledgers._append_audit(
                session,
                actor,
                "alarm.ack",
                f"park/{park}/alarm/{row.id}",
                {"park": park, "rule": row.rule, "subject": row.subject, "reason": reason},
            )
            session.flush()
            return AlarmRecord.of(row)

    def queue_repeats(
        self, park: str, repeat_s: float, channels: Sequence[Channel], now: datetime | None = None
    ) -> int:
        """Queue a `repeat` notification of firing (unacknowledged) alarms last notified more
        than `repeat_s` ago; returns how many alarms were repeated."""
        if repeat_s <= 0 or not channels:
            return 0
        now = now or _now()
        before = now - timedelta(seconds=repeat_s)
        due = select(AlarmRow).where(
            AlarmRow.park == park,
            AlarmRow.state == "firing",
            AlarmRow.notified_at < before,
        )
        with self.ledgers._read() as session:  # most rounds: nothing due, no write lock taken
            if session.scalar(due.with_only_columns(AlarmRow.id).limit(1)) is None:
                return 0
        with self.ledgers._write_sessions() as session, session.begin():
            rows = session.scalars(due).all()
            for row in rows:
                self._queue(session, row, "repeat", channels, now)
            return len(rows)

    # -- outbox -----------------------------------------------------------------------------

    def due_notifications(self, now: datetime | None = None, limit: int = 50) -> list[Notification]:
        now = now or _now()
        with self.ledgers._read() as session:
            rows = session.execute(
                select(AlarmNotificationRow, AlarmRow)
                .join(AlarmRow, AlarmRow.id == AlarmNotificationRow.alarm_id)
                .where(
                    AlarmNotificationRow.status == "pending", AlarmNotificationRow.next_at <= now
                )
                .order_by(AlarmNotificationRow.id)
                .limit(limit)
            ).all()
            return [
                Notification(
                    id=n.id,
                    alarm=AlarmRecord.of(a),
                    event=n.event,
                    channel=Channel.model_validate_json(n.channel),
                    attempts=n.attempts,
                )
                for n, a in rows
            ]

    def mark_sent(self, notification_id: int, now: datetime | None = None) -> None:
        with self.ledgers._write_sessions() as session, session.begin():
            session.execute(
                update(AlarmNotificationRow)
                .where(AlarmNotificationRow.id == notification_id)
                .values(
                    status="sent", sent_at=now or _now(), attempts=AlarmNotificationRow.attempts + 1
                )
            )

    def mark_failed(self, notification_id: int, error: str, retry_at: datetime | None) -> None:
        """One failed attempt; retried at `retry_at`, or given up (`failed`) when None."""
        values: dict[str, Any] = {
            "attempts": AlarmNotificationRow.attempts + 1,
            "last_error": error[:500],
        }
        if retry_at is None:
            values["status"] = "failed"
        else:
            values["next_at"] = retry_at
        with self.ledgers._write_sessions() as session, session.begin():
            session.execute(
                update(AlarmNotificationRow)
                .where(AlarmNotificationRow.id == notification_id)
                .values(**values)
            )

    def notifications(self, alarm_id: int) -> list[tuple[str, str, int]]:
        """(event, status, attempts) of an alarm's notifications, oldest first."""
        with self.ledgers._read() as session:
            rows = session.execute(
                select(
                    AlarmNotificationRow.event,
                    AlarmNotificationRow.status,
                    AlarmNotificationRow.attempts,
                )
                .where(AlarmNotificationRow.alarm_id == alarm_id)
                .order_by(AlarmNotificationRow.id)
            ).all()
            return [(e, s, a) for e, s, a in rows]
