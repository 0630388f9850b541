"""The alarm log on SQLite and PostgreSQL: states, audit entries, one open alarm per key
even with two replicas, the engine lease, the outbox."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.alarms.rules import Breach
from app.alarms.store import AlarmStateError, AlarmStore
from app.ledgers import LedgerStore, NotFoundError
from app.registry.alarm_settings import Channel

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
OFFLINE = Breach(
    "device_offline", "m1", "critical", 106.0, 105.0, {"device": "m1", "silent_s": 106}
)
HOOK = Channel(kind="webhook", url="http://127.0.0.1:9/hook")
ROBOT = Channel(kind="dingtalk", url="http://127.0.0.1:9/robot", rules=("storage_unreachable",))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lingtan.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def ledgers(db_url: str) -> Iterator[LedgerStore]:
    with LedgerStore(db_url) as store:
        yield store


def test_fire_ack_resolve_are_audited(ledgers: LedgerStore) -> None:
    store = AlarmStore(ledgers)
    head = ledgers.audit_head()[0]
    rec = store.fire("demo", OFFLINE, [HOOK, ROBOT], T0)
    assert rec is not None and rec.state == "firing" and rec.subject == "m1"
    assert rec.message["en"] == "device m1 silent for 106 s (reports every ? s)"
    # the same key again while open: nothing new
    assert store.fire("demo", OFFLINE, [HOOK], T0 + timedelta(seconds=5)) is None
    acked = store.acknowledge("demo", rec.id, "key-1", "crew on the way")
    assert (acked.state, acked.acked_by, acked.ack_reason) == (
        "acknowledged",
        "key-1",
        "crew on the way",
    )
    with pytest.raises(AlarmStateError):
        store.acknowledge("demo", rec.id, "key-1", "again")
    with pytest.raises(NotFoundError):
        store.acknowledge("other-park", rec.id, "key-1", "wrong park")
    done = store.resolve("demo", "device_offline", "m1", [HOOK, ROBOT], T0 + timedelta(minutes=3))
    assert done is not None and done.state == "resolved"
    assert done.resolved_at == T0 + timedelta(minutes=3)
    assert store.resolve("demo", "device_offline", "m1", [HOOK], T0) is None
    entries = ledgers.list_audit(after_seq=head)
    assert [(e.action, e.actor, e.object) for e in entries] == [
        ("alarm.fire", "system", f"park/demo/alarm/{rec.id}"),
        ("alarm.ack", "key-1", f"park/demo/alarm/{rec.id}"),
        ("alarm.resolve", "system", f"park/demo/alarm/{rec.id}"),
    ]
    assert entries[1].details["reason"] == "crew on the way"
    assert ledgers.verify_audit() == []
    # a new breach of the same key opens a new alarm
    again = store.fire("demo", OFFLINE, [], T0 + timedelta(minutes=10))
    assert again is not None and again.id != rec.id
    assert [a.id for a in store.list_alarms("demo", which="active")] == [again.id]
    assert [a.id for a in store.list_alarms("demo", which="history")] == [rec.id]
    assert [a.id for a in store.list_alarms("demo")] == [again.id, rec.id]
    # the robot only takes storage alarms: the webhook got firing and resolved, nothing else
    assert store.notifications(rec.id) == [("firing", "pending", 0), ("resolved", "pending", 0)]


def test_two_replicas_open_one_alarm(db_url: str) -> None:
    """Two processes' stores (separate engines on one database) fire the same breach at
    once: exactly one alarm, one audit entry, one queued notification."""
    with LedgerStore(db_url) as a, LedgerStore(db_url) as b:
        stores = [AlarmStore(a), AlarmStore(b)]
        results: list[object] = []
        barrier = threading.Barrier(2)

        def fire(store: AlarmStore) -> None:
            barrier.wait()
            results.append(store.fire("demo", OFFLINE, [HOOK], T0))

        threads = [threading.Thread(target=fire, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r is not None for r in results) == 1
        alarms = stores[0].list_alarms("demo")
        assert len(alarms) == 1
        assert stores[0].notifications(alarms[0].id) == [("firing", "pending", 0)]
        assert [e.action for e in a.list_audit()].count("alarm.fire") == 1


def test_lease_has_one_holder_until_it_expires(db_url: str) -> None:
    with LedgerStore(db_url) as a, LedgerStore(db_url) as b:
        sa, sb = AlarmStore(a), AlarmStore(b)
        assert sa.acquire_lease("api-1", 30, now=T0)
        assert not sb.acquire_lease("api-2", 30, now=T0 + timedelta(seconds=10))
        assert sa.acquire_lease("api-1", 30, now=T0 + timedelta(seconds=20))  # renewed to +50
        assert not sb.acquire_lease("api-2", 30, now=T0 + timedelta(seconds=49))
        assert sb.acquire_lease("api-2", 30, now=T0 + timedelta(seconds=51))  # api-1 went quiet
        assert not sa.acquire_lease("api-1", 30, now=T0 + timedelta(seconds=52))
        sb.release_lease("api-2")
        assert sa.acquire_lease("api-1", 30, now=T0 + timedelta(seconds=53))


def test_outbox_retries_and_repeats(ledgers: LedgerStore) -> None:
    store = AlarmStore(ledgers)
    rec = store.fire("demo", OFFLINE, [HOOK], T0)
    assert rec is not None
    (n,) = store.due_notifications(T0)
    assert (n.event, n.channel, n.alarm.id) == ("firing", HOOK, rec.id)
    store.mark_failed(n.id, "connection refused", T0 + timedelta(seconds=5))
    assert store.due_notifications(T0 + timedelta(seconds=4)) == []
    (n2,) = store.due_notifications(T0 + timedelta(seconds=5))
    assert n2.attempts == 1
    store.mark_sent(n2.id, T0 + timedelta(seconds=5))
    assert store.due_notifications(T0 + timedelta(hours=1)) == []
    # still firing after the repeat interval: one repeat; not again right after
    assert store.queue_repeats("demo", 3600, [HOOK], T0 + timedelta(seconds=3599)) == 0
    assert store.queue_repeats("demo", 3600, [HOOK], T0 + timedelta(seconds=3601)) == 1
    assert store.queue_repeats("demo", 3600, [HOOK], T0 + timedelta(seconds=3700)) == 0
    store.acknowledge("demo", rec.id, "key-1", "known")
    assert store.queue_repeats("demo", 3600, [HOOK], T0 + timedelta(hours=5)) == 0
    assert store.notifications(rec.id) == [("firing", "sent", 2), ("repeat", "pending", 0)]
    # given up after the last attempt
    (rep,) = store.due_notifications(T0 + timedelta(hours=5))
    store.mark_failed(rep.id, "HTTP 500", None)
    assert store.notifications(rec.id)[-1] == ("repeat", "failed", 1)
