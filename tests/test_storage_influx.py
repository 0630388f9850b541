"""InfluxStorage-only behaviour on a real influxd (shared contract: test_storage_contract.py)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from app.intervals.models import IntervalEnergy
from app.storage import InfluxStorage, StorageRejected, StorageUnavailable, WriteBatch
from app.telemetry.models import Reading
from tests.fixtures.influx import InfluxServer, free_port

T0 = 1_795_400_000_000_000_000  # 2026-11-23T08:53:20Z
MIN = 60_000_000_000


@pytest.fixture
async def storage(fresh_influx_db: InfluxServer) -> AsyncIterator[InfluxStorage]:
    s = InfluxStorage(fresh_influx_db.url, fresh_influx_db.database, timeout_s=10)
    yield s
    await s.close()


async def test_ping_and_ensure_database(fresh_influx_db: InfluxServer) -> None:
    s = InfluxStorage(fresh_influx_db.url, "brand_new_db")
    try:
        assert await s.ping()
        assert await s.ensure_database()
        assert await s.ensure_database()  # idempotent
        body = fresh_influx_db.query("SHOW DATABASES")
        assert ["brand_new_db"] in body["results"][0]["series"][0]["values"]
    finally:
        fresh_influx_db.drop_database("brand_new_db")
        await s.close()


async def test_write_chunks_and_gzip(fresh_influx_db: InfluxServer) -> None:
    # more rows than one query chunk (10,000), written in several gzip'd write chunks
    s = InfluxStorage(fresh_influx_db.url, fresh_influx_db.database, chunk_lines=4000, gzip=True)
    try:
        rs = [Reading("big", "d", T0 + i, {"energy_kwh": float(i)}) for i in range(12_345)]
        await s.write(WriteBatch(readings=rs))
        got = await s.readings("big", T0, T0 + 20_000)
        assert len(got) == 12_345
        assert got[0] == rs[0] and got[-1] == rs[-1]
        assert [r.ts_ns for r in got] == [r.ts_ns for r in rs]
    finally:
        await s.close()


async def test_field_type_conflict_is_rejected_with_server_message(
    storage: InfluxStorage, fresh_influx_db: InfluxServer
) -> None:
    assert (
        fresh_influx_db.write_lines(f"reading,device=d,park=p energy_kwh=1i {T0}").status_code
        == 204
    )
    with pytest.raises(StorageRejected, match="field type conflict"):
        await storage.write(WriteBatch(readings=[Reading("p", "d", T0 + 1, {"energy_kwh": 1.5})]))


async def test_names_line_protocol_cannot_carry_are_rejected_before_sending(
    storage: InfluxStorage, fresh_influx_db: InfluxServer
) -> None:
    with pytest.raises(StorageRejected, match="newline"):
        await storage.write(WriteBatch(readings=[Reading("p", "a\nb", T0, {"x": 1.0})]))
    assert fresh_influx_db.points('SELECT * FROM "reading"') == []


async def test_same_device_and_ts_is_one_point(
    storage: InfluxStorage, fresh_influx_db: InfluxServer
) -> None:
    first = Reading("p", "d", T0, {"energy_kwh": 1.0, "power_kw": 5.0})
    second = Reading("p", "d", T0, {"energy_kwh": 2.0, "power_kw": 6.0})
    await storage.write(WriteBatch(readings=[first]))
    await storage.write(WriteBatch(readings=[second, second]))
    rows = fresh_influx_db.points('SELECT COUNT("energy_kwh") FROM "reading"')
    assert rows[0]["count"] == 1


async def test_an_interval_whose_role_changed_is_a_second_series(storage: InfluxStorage) -> None:
    # influx keys intervals by series (park, device, role) + time; the embedded store by
    # (park, device, start) — see docs/storage.md
    a = IntervalEnergy("p", "d", "load", T0, T0 + MIN, {"energy_import_kwh": 1.0})
    b = IntervalEnergy("p", "d", "heat_pump", T0, T0 + MIN, {"energy_import_kwh": 2.0})
    await storage.write(WriteBatch(intervals=[a, b]))
    assert sorted(await storage.intervals("p", T0, T0 + 1), key=lambda i: i.role) == [b, a]


async def test_unreachable_server_is_unavailable() -> None:
    s = InfluxStorage(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    try:
        assert not await s.ping()
        with pytest.raises(StorageUnavailable):
            await s.write(WriteBatch(readings=[Reading("p", "d", T0, {"x": 1.0})]))
        with pytest.raises(StorageUnavailable):
            await s.readings("p", 0, T0)
        with pytest.raises(StorageUnavailable):
            await s.ensure_database()
    finally:
        await s.close()


async def test_missing_database_means_retry_later_for_writes_and_empty_reads(
    influx_server: InfluxServer,
) -> None:
    s = InfluxStorage(influx_server.url, "does_not_exist_db")
    try:
        with pytest.raises(StorageUnavailable, match="404"):
            await s.write(WriteBatch(readings=[Reading("p", "d", T0, {"x": 1.0})]))
        assert await s.readings("p", 0, T0 + 1) == []
    finally:
        await s.close()


def _align(ts_ns: int) -> int:
    return ts_ns - ts_ns % (15 * MIN)


async def test_histories_take_a_few_requests_for_many_devices(storage: InfluxStorage) -> None:
    n = 1_200
    t0 = _align(T0)  # all three readings in one interval
    await storage.write(
        WriteBatch(
            readings=[
                Reading("p", f"m{i}", t0 + k * MIN, {"energy_kwh": float(k)})
                for i in range(n)
                for k in range(3)
            ]
        )
    )
    requests: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        requests.append(request)

    storage._client.event_hooks["request"].append(count)
    got = await storage.histories("p", {f"m{i}": t0 + 10 * MIN for i in range(n)}, _align)
    assert len(got) == n and all(len(rs) == 3 for _, rs in got.values())
    # one request finds the predecessors (a statement per 500 devices), one loads from
    # their interval's start (two statements per 500 devices)
    assert len(requests) == 2
    assert {r.method for r in requests} == {"POST"}


async def test_histories_on_a_missing_database_are_empty_and_unreachable_is_unavailable(
    influx_server: InfluxServer,
) -> None:
    s = InfluxStorage(influx_server.url, "does_not_exist_db")
    try:
        assert await s.histories("p", {"d": T0, "e": T0}, _align) == {
            "d": (_align(T0), []),
            "e": (_align(T0), []),
        }
    finally:
        await s.close()
    s = InfluxStorage(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    try:
        with pytest.raises(StorageUnavailable):
            await s.histories("p", {"d": T0}, _align)
    finally:
        await s.close()


async def test_a_group_of_devices_selects_exactly_those_devices(storage: InfluxStorage) -> None:
    stored = ["a.b", "a-b", "aXb", "a.b.c", "xa.b", "m1", "m10"]
    await storage.write(
        WriteBatch(readings=[Reading("p", d, T0, {"energy_kwh": 1.0}) for d in stored])
    )
    q = storage._devices_readings_q("p", ["a.b", "m1", "nothing"], None, T0 + 1, last=True)
    assert sorted(s.tags["device"] for s in await storage.query_many([q])) == ["a.b", "m1"]


async def test_query_many_sends_long_statement_lists_in_several_requests(
    storage: InfluxStorage,
) -> None:
    n = 1_201
    await storage.write(
        WriteBatch(readings=[Reading("p", f"d{i}", T0 + i, {"energy_kwh": 1.0}) for i in range(n)])
    )
    requests: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        requests.append(request)

    storage._client.event_hooks["request"].append(count)
    got = await storage.query_many(
        [f'SELECT * FROM "reading" WHERE "device" = \'d{i}\'' for i in range(n)]
    )
    assert [s.values[0][0] for s in got] == [T0 + i for i in range(n)]  # in statement order
    assert len(requests) == 3  # 500 statements a request
    assert await storage.query_many([]) == []


async def test_foreign_string_and_boolean_fields_do_not_make_history_unreadable(
    storage: InfluxStorage,
) -> None:
    readings = [Reading("p", "m", T0 + i * MIN, {"energy_kwh": 10.0 + i}) for i in range(3)]
    await storage.write(WriteBatch(readings=readings))

    def align(ns: int) -> int:
        return ns - ns % (15 * MIN)

    before = await storage.histories("p", {"m": T0 + 3 * MIN}, align)
    # another tool wrote into the reading measurement: a note (string) and a flag (boolean);
    # reading them used to raise, so a restarted collector could never load this device
    await storage.write_lines([f'reading,device=m,park=p note="swapped meter",checked=true {T0}'])
    got = await storage.readings("p", T0, T0 + 3 * MIN, "m")
    assert [r.values for r in got] == [r.values for r in readings]
    last = await storage.last_readings("p", "m", T0 + 3 * MIN, 2)
    assert [r.values for r in last] == [r.values for r in readings[1:]]
    assert await storage.histories("p", {"m": T0 + 3 * MIN}, align) == before


async def test_https_servers_are_verified_and_http_ones_skip_the_ca_bundle() -> None:
    """Only a plain http:// URL goes without certificate checks (no TLS is spoken to it);
    read off httpx's connection pool, the one place the SSL context is kept."""
    for url, verified in (
        ("http://127.0.0.1:8086", False),
        ("HTTP://127.0.0.1:8086", False),
        ("https://influx.example:8086", True),
        ("HTTPS://influx.example:8086", True),
    ):
        s = InfluxStorage(url)
        ctx = s._client._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert (ctx.check_hostname, ctx.verify_mode == ssl.CERT_REQUIRED) == (verified, verified)
        await s.close()
