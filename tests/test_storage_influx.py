"""InfluxStorage against a real influxd: round trips, idempotency, injection, errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.intervals.models import IntervalEnergy
from app.storage import InfluxStorage, StorageRejected, StorageUnavailable, WriteBatch
from app.storage.lineprotocol import representable_name
from app.telemetry.models import DeadLetter, Reading, RejectReason
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


async def test_readings_round_trip_with_nasty_ids_and_unicode(storage: InfluxStorage) -> None:
    park = "园区 a,b=c\\d'\"x\u3000y\x85"
    readings = [
        Reading(park, "电表 1", T0, {"energy_import_kwh": 12345.6, "power_kw": -0.1}),
        Reading(
            park,
            "m=2,x y",
            T0 + 1,
            {"energy_kwh": 1e-300, "time": 7.0, "park": 3.5, "__odd key,=": 2.0},
            reset=True,
            ts_source="collector",
        ),
        Reading(park, "电表 1", T0 + MIN, {"energy_import_kwh": 12346.0}),
        Reading("other-park", "电表 1", T0, {"energy_import_kwh": 1.0}),
    ]
    await storage.write(WriteBatch(readings=readings))
    got = await storage.readings(park, T0, T0 + 2 * MIN)
    assert got == readings[:3]
    assert await storage.readings(park, T0, T0 + 2 * MIN, device="m=2,x y") == [readings[1]]
    # half-open range: the point at end_ns is excluded
    assert await storage.readings(park, T0, T0 + MIN) == readings[:2]


async def test_intervals_round_trip(storage: InfluxStorage) -> None:
    q = 900_000_000_000
    ivs = [
        IntervalEnergy("p1", "pv-1", "pv", T0, T0 + q, {"energy_kwh": 12.5}),
        IntervalEnergy(
            "p1",
            "grid main",
            "grid",
            T0,
            T0 + q,
            {"energy_import_kwh": 100.25, "energy_export_kwh": 0.0},
            estimated=True,
            flags=("gap", "reset"),
        ),
        IntervalEnergy("p1", "pv-1", "pv", T0 + q, T0 + 2 * q, {"energy_kwh": 0.0}),
    ]
    await storage.write(WriteBatch(intervals=ivs))
    got = await storage.intervals("p1", T0, T0 + 2 * q)
    assert sorted(got, key=lambda i: (i.start_ns, i.device)) == [ivs[1], ivs[0], ivs[2]]
    assert await storage.intervals("p1", T0, T0 + 2 * q, device="pv-1") == [ivs[0], ivs[2]]


async def test_deadletters_round_trip_and_filters(storage: InfluxStorage) -> None:
    raw = bytes(range(256))
    ds = [
        DeadLetter(
            T0, "lingtan/v1/p1/d1/telemetry", "p1", "d1", RejectReason.NON_FINITE, "NaN", raw
        ),
        # same ns, same park and reason: must not overwrite the previous one
        DeadLetter(
            T0, "lingtan/v1/p1/d1/telemetry", "p1", "d1", RejectReason.NON_FINITE, "2", b"{"
        ),
        DeadLetter(T0 + 5, "garbage\ntopic", None, None, RejectReason.BAD_TOPIC, 'say "hi"\\', b""),
        DeadLetter(
            T0 + 6, "lingtan/v1/a\nb/x/telemetry", "a\nb", "x", RejectReason.BAD_TOPIC, "", b"x"
        ),
        DeadLetter(T0 + 7, "t", "p2", None, RejectReason.UNKNOWN_DEVICE, "日本", "é".encode()),
    ]
    await storage.write(WriteBatch(deadletters=ds))
    got = await storage.deadletters(None, None, None)
    assert len(got) == 5
    assert got[0] == ds[0]
    # nudged by 1 ns to stay a separate point; everything else identical
    assert got[1].received_ns == T0 + 1 and got[1].detail == "2" and got[1].raw == b"{"
    assert got[2:] == ds[2:]
    assert await storage.deadletters("p2", None, None) == [ds[4]]
    assert await storage.deadletters("a\nb", None, None) == [ds[3]]
    assert await storage.deadletters(None, T0 + 5, T0 + 7) == ds[2:4]
    assert [d.detail for d in await storage.deadletters(None, None, None, limit=2)] == ["NaN", "2"]


async def test_same_device_and_ts_overwrites(
    storage: InfluxStorage, fresh_influx_db: InfluxServer
) -> None:
    first = Reading("p", "d", T0, {"energy_kwh": 1.0, "power_kw": 5.0})
    second = Reading("p", "d", T0, {"energy_kwh": 2.0, "power_kw": 6.0})
    await storage.write(WriteBatch(readings=[first]))
    await storage.write(WriteBatch(readings=[second, second]))
    rows = fresh_influx_db.points('SELECT COUNT("energy_kwh") FROM "reading"')
    assert rows[0]["count"] == 1
    assert await storage.readings("p", T0, T0 + 1) == [second]


async def test_last_readings_returns_latest_oldest_first(storage: InfluxStorage) -> None:
    rs = [Reading("p", "d", T0 + i * MIN, {"energy_kwh": float(i)}) for i in range(10)]
    await storage.write(WriteBatch(readings=[*rs, Reading("p", "other", T0, {"energy_kwh": 9.0})]))
    assert await storage.last_readings("p", "d", T0 + 5 * MIN, 2) == [rs[3], rs[4]]
    assert await storage.last_readings("p", "d", T0, 3) == []
    assert await storage.last_readings("p", "d", T0 + 100 * MIN, 100) == rs


@pytest.mark.parametrize(
    "evil",
    [
        "p1' OR park = 'p2",
        "p1' OR park =~ /.*/ OR park = '",
        "x\\' OR 1=1",
        "p1'; DROP DATABASE lingtan; SELECT * FROM reading WHERE park = 'p1",
        "p1\n",
    ],
)
async def test_influxql_injection_through_ids_finds_nothing(
    storage: InfluxStorage, fresh_influx_db: InfluxServer, evil: str
) -> None:
    await storage.write(
        WriteBatch(
            readings=[
                Reading("p1", "d", T0, {"energy_kwh": 1.0}),
                Reading("p2", "d", T0, {"energy_kwh": 2.0}),
            ],
            deadletters=[DeadLetter(T0, "t", "p1", None, RejectReason.INVALID_JSON, "", b"")],
        )
    )
    assert await storage.readings(evil, T0 - MIN, T0 + MIN) == []
    assert await storage.readings("p1", T0 - MIN, T0 + MIN, device=evil) == []
    assert await storage.intervals(evil, T0 - MIN, T0 + MIN) == []
    assert await storage.last_readings(evil, evil, T0 + MIN, 10) == []
    assert await storage.deadletters(evil, None, None) == []
    # and the data is still all there
    assert len(await storage.readings("p1", T0 - MIN, T0 + MIN)) == 1
    assert len(await storage.readings("p2", T0 - MIN, T0 + MIN)) == 1


async def test_ids_with_quotes_are_found_exactly(storage: InfluxStorage) -> None:
    odd = "o'brien\\x\"y"
    r = Reading(odd, odd, T0, {"energy_kwh": 1.0})
    await storage.write(WriteBatch(readings=[r, Reading("o", "o", T0, {"energy_kwh": 2.0})]))
    assert await storage.readings(odd, T0, T0 + 1, device=odd) == [r]


_id_chars = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="".join(map(chr, [*range(32), 127]))
)
# biased towards the characters line protocol and InfluxQL treat specially
_special = st.sampled_from(list(",= \\\"'#é日"))
ids = st.text(_special | _id_chars, min_size=1, max_size=12).filter(representable_name)
finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    device=ids,
    values=st.dictionaries(ids, finite, min_size=1, max_size=4),
    reset=st.booleans(),
    ts=st.integers(min_value=0, max_value=2**62),
)
async def test_any_representable_reading_round_trips(
    storage: InfluxStorage, device: str, values: dict[str, float], reset: bool, ts: int
) -> None:
    # one park per example keeps examples apart inside the test's database
    park = f"prop-{uuid.uuid4().hex}"
    r = Reading(park, device, ts, values, reset=reset)
    await storage.write(WriteBatch(readings=[r]))
    got = await storage.readings(park, ts, ts + 1)
    assert got == [r]
    assert {k: v.hex() for k, v in got[0].values.items()} == {k: v.hex() for k, v in values.items()}


async def test_large_results_come_back_whole(fresh_influx_db: InfluxServer) -> None:
    # more rows than one query chunk (10,000), written in several write chunks
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


async def test_unencodable_points_are_rejected_before_sending(storage: InfluxStorage) -> None:
    with pytest.raises(StorageRejected, match="non-finite"):
        await storage.write(WriteBatch(readings=[Reading("p", "d", T0, {"x": float("nan")})]))
    with pytest.raises(StorageRejected, match="newline"):
        await storage.write(WriteBatch(readings=[Reading("p", "a\nb", T0, {"x": 1.0})]))


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
