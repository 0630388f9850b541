"""The decoder's fast path for well-formed readings agrees with the pydantic reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.registry import parse_registry
from app.registry.models import COUNTER_QUANTITIES, INSTANT_QUANTITIES
from app.telemetry.decode import Decoded, TelemetryDecoder
from app.telemetry.models import Reading

REGISTRY = parse_registry("parks:\n  - id: p1\n    devices:\n      - {id: grid-main, role: grid}\n")
TOPIC = "lingtan/v1/p1/grid-main/telemetry"
NOW_S = 1_795_392_000  # 2026-11-24T00:00:00Z
NOW_NS = NOW_S * 10**9
FAST = TelemetryDecoder(REGISTRY)
REFERENCE = TelemetryDecoder(REGISTRY, fast_path=False)

KNOWN = sorted(COUNTER_QUANTITIES | INSTANT_QUANTITIES)

# names: the contract's, our reserved ones, plausible extras and odd keys (a trailing newline,
# upper case, a lone surrogate, empty, too long)
names = st.sampled_from(
    [
        *KNOWN,
        "ts",
        "reset",
        "time",
        "park",
        "flags",
        "cos_phi",
        "x_y",
        "fw",
        "Temp",
        "ab\n",
        "\ud800",
        "",
        "a" * 70,
    ]
)
# numbers on and around every bound: the model's ge/le, ±1e12, float range, NaN/Inf
edge_numbers = st.sampled_from(
    [
        0,
        -0.0,
        -1,
        -1e-9,
        100,
        100.0,
        100.0000001,
        -90,
        -90.5,
        200,
        200.5,
        400,
        400.1,
        10**12,
        10**12 + 1,
        -(10**12),
        1e12,
        1.0000000001e12,
        2**63,
        10**400,
        -(10**400),
        1e308,
        float("nan"),
        float("inf"),
        float("-inf"),
    ]
)
numbers = st.one_of(
    edge_numbers,
    st.integers(min_value=-(10**13), max_value=10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1000, max_value=1000),
)
others = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(["12.5", "1e3", "NaN", "", "on"]),
    st.text(max_size=6),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "power_kw"]), st.integers(0, 3), max_size=1),
)
values = st.one_of(numbers, numbers, others)

offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30)), None]
)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    """RFC 3339 / ISO strings around now: with offset, `Z`, no offset, or date only."""
    seconds = draw(st.integers(min_value=-400, max_value=400) | st.integers(-(10**9), 10**9))
    micros = draw(st.sampled_from([0, 1, 123_456, 999_999]))
    tz = draw(offsets)
    dt = datetime.fromtimestamp(NOW_S, UTC) + timedelta(seconds=seconds, microseconds=micros)
    text = (dt.replace(tzinfo=None) if tz is None else dt.astimezone(tz)).isoformat()
    style = draw(st.sampled_from(["plain", "Z", "space", "date"]))
    if style == "Z" and text.endswith("+00:00"):
        return text[:-6] + "Z"
    if style == "space":
        return text.replace("T", " ")
    if style == "date":
        return text[:10]
    return text


# epoch seconds and milliseconds around now and around the 2000-01-01 and format limits
epoch_s = st.integers(min_value=NOW_S - 400, max_value=NOW_S + 400)
timestamps = st.one_of(
    st.none(),
    epoch_s,
    epoch_s.map(float),
    epoch_s.map(lambda s: s + 0.123456789),
    st.integers(min_value=(NOW_S - 400) * 1000, max_value=(NOW_S + 400) * 1000),
    st.sampled_from(
        [
            NOW_S + 300,
            NOW_S + 301,
            (NOW_S + 300) * 1000,
            (NOW_S + 300) * 1000 + 1,
            946_684_800,
            946_684_799,
            946_684_799.999,
            10**11 - 1,
            10**11,
            10**14 - 1,
            10**14,
            10**400,
            0,
            -1,
            0.5,
            1e300,
            float("nan"),
            float("inf"),
            True,
            False,
            [NOW_S],
            "yesterday",
            "",
            "\ud800",
        ]
    ),
    st.integers(),
    st.floats(),
    rfc3339(),
)


@st.composite
def readings(draw: st.DrawFn) -> dict[str, Any]:
    """A mostly well-formed reading with a few edge fields mixed in."""
    reading: dict[str, Any] = {}
    if draw(st.booleans()):
        reading["ts"] = draw(timestamps)
    for name in draw(st.lists(st.sampled_from(KNOWN), max_size=3, unique=True)):
        reading[name] = draw(st.floats(min_value=0, max_value=1e6) | values)
    if draw(st.integers(0, 3)) == 0:
        reading["reset"] = draw(st.booleans() | others)
    for name, value in draw(st.dictionaries(names, values, max_size=2)).items():
        reading[name] = draw(timestamps) if name == "ts" else value
    return reading


payloads = st.one_of(
    readings(),
    st.lists(readings(), min_size=1, max_size=4),
    st.lists(readings() | others | numbers, min_size=1, max_size=3),
)


def assert_same(payload: bytes) -> Decoded:
    fast = FAST.decode(TOPIC, payload, NOW_NS)
    reference = REFERENCE.decode(TOPIC, payload, NOW_NS)
    # readings (values, ts, reset, source), dead letters (reason, detail, raw bytes), counts
    assert fast == reference
    return fast


@settings(max_examples=500, deadline=None)
@given(payloads)
def test_fast_path_agrees_with_pydantic(doc: Any) -> None:
    assert_same(json.dumps(doc).encode())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(names, values, max_size=4))
def test_fast_path_agrees_on_arbitrary_fields(doc: dict[str, Any]) -> None:
    assert_same(json.dumps(doc).encode())


def fast_reading(item: Any) -> Reading | None:
    return FAST._fast_reading("p1", "grid-main", item, NOW_NS, NOW_NS + 300 * 10**9, Decoded())


def test_fast_path_takes_the_ordinary_readings() -> None:
    # not vacuous: what gateways normally send is decided without pydantic
    ordinary = [
        {"ts": "2026-11-23T08:00:00+08:00", "energy_import_kwh": 12345.6, "power_kw": 120.5},
        {"ts": 1795000000, "energy_import_kwh": 1, "power_kw": -3},
        {"ts": 1795000000250, "soc_pct": 100, "reset": True},
        {"energy_kwh": 0.5, "cos_phi": 0.97, "fw": "1.2", "time": "x"},
        {"ts": 1795000000.5, "power_kw": None, "temp_c": -90},
    ]
    for item in ordinary:
        assert fast_reading(item) is not None, item
        assert_same(json.dumps(item).encode())


def test_fast_path_leaves_the_unusual_to_pydantic() -> None:
    unusual: list[Any] = [
        {"ts": 1795000000, "power_kw": True},
        {"ts": 1795000000, "energy_import_kwh": "12.5"},
        {"ts": 1795000000, "power_kw": float("nan")},
        {"ts": 1795000000, "soc_pct": 100.5},
        {"ts": 1795000000, "x_y": 10**400},
        {"ts": True, "power_kw": 1},
        {"ts": "2026-11-23T08:00:00", "power_kw": 1},
        {"ts": NOW_S + 301, "power_kw": 1},
        {"ts": 946_684_799, "power_kw": 1},
        {"ts": 1795000000},
        {"ts": None, "reset": True},  # a dead letter: "ts": null
        {"ts": 1e12, "power_kw": 1},  # a float is seconds: after 2100
        {"\ud800": 1, "power_kw": 1},
        {"power_kw": 1, "reset": 1},
        [{"power_kw": 1}],
    ]
    for item in unusual:
        assert fast_reading(item) is None, item


def plain(payload: bytes) -> list[Reading] | None:
    return FAST.plain(TOPIC, payload, NOW_NS)


@settings(max_examples=500, deadline=None)
@given(payloads)
def test_compiled_tier_agrees_with_pydantic(doc: Any) -> None:
    # whatever the compiled tier takes, the reference gives the same readings, no dead letter
    # and no ignored field; what it declines is decided by the tiers above
    for payload in (json.dumps(doc).encode(), json.dumps(doc, separators=(",", ":")).encode()):
        got = plain(payload)
        if got is not None:
            assert REFERENCE.decode(TOPIC, payload, NOW_NS) == Decoded(readings=got)


def test_compiled_tier_takes_the_ordinary_payloads() -> None:
    # not vacuous: what gateways normally send never reaches Python-level checks
    ordinary: list[Any] = [
        {"ts": "2026-11-23T08:00:00+08:00", "energy_import_kwh": 12345.6, "power_kw": 120.5},
        {"ts": 1795000000, "energy_import_kwh": 1, "power_kw": -3},
        {"ts": 1795000000250, "soc_pct": 100, "reset": True},
        {"ts": 1795000000.5, "power_kw": None, "temp_c": -90},
        {"energy_kwh": 0.5},
        [{"ts": 1795000000 + 60 * k, "energy_import_kwh": 1000.0 + k} for k in range(10)],
    ]
    for doc in ordinary:
        payload = json.dumps(doc).encode()
        got = plain(payload)
        assert got is not None, doc
        assert Decoded(readings=got) == REFERENCE.decode(TOPIC, payload, NOW_NS)


def test_compiled_tier_declines_what_others_must_decide() -> None:
    declined: list[Any] = [
        {"ts": 1795000000, "energy_kwh": 1, "cos_phi": 0.9},  # an extra: kept by the others
        {"ts": 1795000000, "energy_kwh": 1, "park": "x"},  # reserved: dropped and counted
        {"ts": 1795000000, "power_kw": True},
        {"ts": None, "power_kw": 1},
        {"ts": 1795000000},  # no quantity
        {"ts": 946_684_799, "power_kw": 1},  # before 2000
        {"ts": NOW_S + 301, "power_kw": 1},  # beyond the future limit
        {"ts": "2026-11-23T08:00:00", "power_kw": 1},  # no offset
        {"ts": 1795000000, "soc_pct": 100.5},
        [],
    ]
    for doc in declined:
        assert plain(json.dumps(doc).encode()) is None, doc
    # a literal that underflows to 0.0 is a dead letter, which msgspec would read as 0
    assert plain(b'{"ts": 1795000000, "energy_kwh": 1e-400}') is None
    assert plain(b'{"ts": 1795000000, "energy_kwh": 0.' + b"0" * 330 + b"1}") is None
    assert plain(b'{"ts": 1795000000, "energy_kwh": NaN}') is None
    assert plain(b'\xef\xbb\xbf{"energy_kwh": 1}') is None  # a byte order mark
    # an unregistered device or a foreign topic
    assert FAST.plain("lingtan/v1/p1/nobody/telemetry", b'{"energy_kwh": 1}', NOW_NS) is None
    assert FAST.plain("lingtan/v1/p1/grid-main/status", b'{"energy_kwh": 1}', NOW_NS) is None


def test_compiled_tier_follows_registry_edits() -> None:
    decoder = TelemetryDecoder(REGISTRY)
    payload = b'{"ts": 1795000000, "energy_kwh": 1}'
    assert decoder.plain(TOPIC, payload, NOW_NS) is not None  # remembered as registered
    edited = "parks:\n  - id: p1\n    devices:\n      - {id: pv, role: pv}\n"
    decoder.registry = parse_registry(edited)
    assert decoder.plain(TOPIC, payload, NOW_NS) is None  # grid-main is gone
    assert decoder.decode(TOPIC, payload, NOW_NS).deadletters[0].reason == "unknown_device"
