"""Payload validation (docs/gateway-contract.md): what is accepted, and each rejection's reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from app.registry import parse_registry
from app.storage.schema import reading_line
from app.telemetry.decode import TelemetryDecoder, parse_topic, parse_ts
from app.telemetry.models import RejectReason

REGISTRY = parse_registry(
    """
parks:
  - id: p1
    devices:
      - {id: grid-main, role: grid}
      - {id: pv-1, role: pv, max_kw: 100}
"""
)
TOPIC = "lingtan/v1/p1/grid-main/telemetry"
NOW_NS = 1_795_392_000 * 10**9  # 2026-11-24T00:00:00Z
DEC = TelemetryDecoder(REGISTRY)


def decode(payload: bytes | str, topic: str = TOPIC):  # type: ignore[no-untyped-def]
    raw = payload.encode() if isinstance(payload, str) else payload
    return DEC.decode(topic, raw, NOW_NS)


def test_single_reading_with_rfc3339_offset() -> None:
    out = decode(
        '{"ts": "2026-11-23T08:00:00+08:00", "energy_import_kwh": 12345.6, "power_kw": 120.5}'
    )
    assert out.deadletters == []
    (r,) = out.readings
    # 08:00 at +08:00 is 00:00 UTC on the same day
    assert r.ts_ns == int(datetime(2026, 11, 23, tzinfo=UTC).timestamp()) * 10**9
    assert r.values == {"energy_import_kwh": 12345.6, "power_kw": 120.5}
    assert (r.park, r.device, r.reset, r.ts_source) == ("p1", "grid-main", False, "device")


def test_array_with_epoch_seconds_and_milliseconds() -> None:
    out = decode('[{"ts": 1795000000, "power_kw": 1}, {"ts": 1795000000250, "power_kw": 2}]')
    assert [r.ts_ns for r in out.readings] == [1_795_000_000_000_000_000, 1_795_000_000_250_000_000]
    assert out.deadletters == []


def test_fractional_rfc3339_keeps_microseconds() -> None:
    (r,) = decode('{"ts": "2026-11-23T00:00:00.123456Z", "power_kw": 1}').readings
    assert r.ts_ns % 10**9 == 123_456_000


def test_missing_ts_is_stamped_by_collector() -> None:
    (r,) = decode('{"power_kw": 3}').readings
    assert r.ts_ns == NOW_NS and r.ts_source == "collector"


def test_reset_flag_and_unknown_numeric_fields_kept() -> None:
    out = decode(
        '{"ts": 1795000000, "energy_import_kwh": 0.5, "reset": true, "cos_phi": 0.97, "fw": "1.2"}'
    )
    (r,) = out.readings
    assert r.reset is True
    assert r.values == {"energy_import_kwh": 0.5, "cos_phi": 0.97}
    assert out.ignored_fields == 1  # "fw" is not a number: counted, not stored


def test_unknown_field_name_ending_in_a_newline_is_not_kept() -> None:
    # "$" also matches before a final newline: such a name was kept, and then no batch holding
    # it could be written (line protocol cannot carry it), so the collector retried forever
    out = decode('{"ts": 1795000000, "power_kw": 1, "ab\\n": 2, "cd\\r": 3}')
    (r,) = out.readings
    assert r.values == {"power_kw": 1.0}
    assert out.ignored_fields == 2
    assert "\n" not in reading_line(r)  # and the reading is writable


def test_ids_with_a_trailing_newline_are_not_valid_ids() -> None:
    assert parse_topic("lingtan/v1/p1\n/grid-main/telemetry") is None
    assert parse_topic("lingtan/v1/p1/grid-main\n/telemetry") is None
    assert parse_topic("lingtan/v1/p1/grid-main/telemetry") == ("p1", "grid-main")


@pytest.mark.parametrize(
    ("payload", "reason", "words"),
    [
        ("{not json", RejectReason.INVALID_JSON, "not UTF-8 JSON"),
        (b"\xff\xfe\x00", RejectReason.INVALID_JSON, "not UTF-8 JSON"),
        ('"hello"', RejectReason.INVALID_READING, "object or an array"),
        ("[]", RejectReason.INVALID_READING, "empty array"),
        (
            '{"ts": 1795000000, "energy_import_kwh": "12.5"}',
            RejectReason.INVALID_READING,
            "energy_import_kwh",
        ),
        ('{"ts": 1795000000, "power_kw": true}', RejectReason.INVALID_READING, "power_kw"),
        ('{"ts": 1795000000, "power_kw": NaN}', RejectReason.NON_FINITE, "power_kw"),
        ('{"ts": 1795000000, "power_kw": Infinity}', RejectReason.NON_FINITE, "power_kw"),
        (
            '{"ts": 1795000000, "energy_import_kwh": -1}',
            RejectReason.OUT_OF_RANGE,
            "energy_import_kwh",
        ),
        ('{"ts": 1795000000, "soc_pct": 140}', RejectReason.OUT_OF_RANGE, "soc_pct"),
        ('{"ts": 1795000000, "power_kw": 1e15}', RejectReason.OUT_OF_RANGE, "power_kw"),
        ('{"ts": 1795392600, "power_kw": 1}', RejectReason.FUTURE_TIMESTAMP, "600 s in the future"),
        ('{"ts": 0.5, "power_kw": 1}', RejectReason.OUT_OF_RANGE, "before 2000"),
        (
            '{"ts": "2026-11-23T08:00:00", "power_kw": 1}',
            RejectReason.INVALID_READING,
            "no UTC offset",
        ),
        ('{"ts": "yesterday", "power_kw": 1}', RejectReason.INVALID_READING, "RFC 3339"),
        ('{"ts": 1795000000}', RejectReason.INVALID_READING, "no quantities"),
    ],
)
def test_bad_payloads_are_dead_lettered_with_reason(
    payload: str | bytes, reason: RejectReason, words: str
) -> None:
    out = decode(payload)
    assert out.readings == []
    (dl,) = out.deadletters
    assert dl.reason is reason
    assert words in dl.detail, dl.detail
    assert dl.raw == (payload.encode() if isinstance(payload, str) else payload)
    assert (dl.topic, dl.park, dl.device, dl.received_ns) == (TOPIC, "p1", "grid-main", NOW_NS)


def test_one_bad_element_does_not_sink_the_array() -> None:
    out = decode('[{"ts": 1795000000, "power_kw": 1}, {"ts": 1795000060, "power_kw": NaN}, 7]')
    assert [r.values for r in out.readings] == [{"power_kw": 1.0}]
    assert [d.reason for d in out.deadletters] == [
        RejectReason.NON_FINITE,
        RejectReason.INVALID_READING,
    ]
    assert out.deadletters[0].detail.startswith("element 1 of 3: ")
    assert json.loads(out.deadletters[1].raw) == 7


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("lingtan/v1/p1/ghost/telemetry", RejectReason.UNKNOWN_DEVICE),
        ("lingtan/v1/p9/grid-main/telemetry", RejectReason.UNKNOWN_PARK),
        ("lingtan/v2/p1/grid-main/telemetry", RejectReason.BAD_TOPIC),
        ("lingtan/v1/p1/grid main/telemetry", RejectReason.BAD_TOPIC),
    ],
)
def test_topic_problems(topic: str, reason: RejectReason) -> None:
    out = decode('{"power_kw": 1}', topic=topic)
    assert out.readings == []
    assert [d.reason for d in out.deadletters] == [reason]


def test_too_large_payload() -> None:
    big = "[" + ",".join(['{"power_kw": 1}'] * 80_000) + "]"
    (dl,) = decode(big).deadletters
    assert dl.reason is RejectReason.TOO_LARGE


def test_parse_topic_and_ts_helpers() -> None:
    assert parse_topic("lingtan/v1/a.b/c_d-1/telemetry") == ("a.b", "c_d-1")
    assert parse_topic("lingtan/v1/a/b/status") is None
    assert parse_ts("1970-01-01T00:00:01+00:00") == 10**9
    assert parse_ts(1_000_000_000) == 10**18
    with pytest.raises(ValueError):
        parse_ts(10**15)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"[" + b"[" * 995 + b"]" * 995 + b"]",
    ],
)
def test_deeply_nested_json_is_a_dead_letter_not_a_crash(payload: bytes) -> None:
    # json.loads raised RecursionError here (found by the fuzz in test_fuzz_decoder.py)
    out = decode(payload)
    assert out.readings == []
    (dl,) = out.deadletters
    assert dl.reason == RejectReason.INVALID_JSON
    assert dl.raw == payload


def test_huge_integer_in_unknown_field_is_out_of_range() -> None:
    # float(10**400) raised OverflowError (found by the fuzz in test_fuzz_decoder.py)
    out = decode('{"ts": 1795000000, "x_y": 1' + "0" * 400 + "}")
    assert out.readings == []
    (dl,) = out.deadletters
    assert dl.reason == RejectReason.OUT_OF_RANGE
    assert dl.detail.startswith("x_y:")


def test_detail_of_a_huge_bad_value_is_bounded() -> None:
    out = decode(json.dumps({"power_kw": "x" * 100_000}))
    (dl,) = out.deadletters
    assert dl.reason == RejectReason.INVALID_READING
    assert len(dl.detail) < 400


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        # null is not "no ts": stamping it with the arrival time would invent a time
        (b'{"ts": null, "energy_import_kwh": 5}', RejectReason.INVALID_READING, "ts is null"),
        # a counter literal that is not zero but reads as 0.0 (it would look like a reset)
        (
            b'{"ts": 1795000000, "energy_import_kwh": 1e-400}',
            RejectReason.OUT_OF_RANGE,
            "energy_import_kwh: '1e-400' is not zero but underflows to 0",
        ),
        (
            b'{"ts": 1795000000, "x_y": -2.5E-999}',
            RejectReason.OUT_OF_RANGE,
            "underflows to 0",
        ),
        # a float epoch is seconds: 1e12 s is in the year 33658, not 2001-09-09 in ms
        (b'{"ts": 1e12, "power_kw": 1}', RejectReason.OUT_OF_RANGE, "after 2100"),
        (b'{"ts": 4102444800, "power_kw": 1}', RejectReason.OUT_OF_RANGE, "after 2100"),
        (
            b'{"ts": 99999999999999, "power_kw": 1}',
            RejectReason.OUT_OF_RANGE,
            "epoch milliseconds is after 2100",
        ),
        (b'{"ts": 100000000000000, "power_kw": 1}', RejectReason.INVALID_READING, "neither"),
        (b'{"ts": 946684799999, "power_kw": 1}', RejectReason.OUT_OF_RANGE, "before 2000"),
        # only UTF-8: a BOM, UTF-16 (with and without BOM), UTF-32, lone surrogates
        (
            b'\xef\xbb\xbf{"power_kw": 1}',
            RejectReason.INVALID_JSON,
            "not UTF-8 JSON: starts with a UTF-8 byte order mark",
        ),
        ('{"power_kw": 1}'.encode("utf-16"), RejectReason.INVALID_JSON, "UTF-16 or UTF-32"),
        ('{"power_kw": 1}'.encode("utf-16-le"), RejectReason.INVALID_JSON, "UTF-16 or UTF-32"),
        ('{"power_kw": 1}'.encode("utf-32"), RejectReason.INVALID_JSON, "UTF-16 or UTF-32"),
        (b'{"power_kw": 1, "n\\ud800": 2}', RejectReason.INVALID_JSON, "lone surrogate"),
        (b'{"power_kw": 1, "fw": "\\uDFFFx"}', RejectReason.INVALID_JSON, "lone surrogate"),
        (b'{"power_kw": 1, "fw": "\xed\xa0\x80"}', RejectReason.INVALID_JSON, "invalid UTF-8"),
    ],
)
def test_strict_dead_letters(payload: bytes, reason: RejectReason, detail: str) -> None:
    out = decode(payload)
    assert out.readings == []
    (dl,) = out.deadletters
    assert dl.reason is reason and detail in dl.detail, dl.detail
    assert dl.raw == payload


def test_what_strictness_still_accepts() -> None:
    out = decode(
        b'[{"ts": 1795000000.5, "energy_import_kwh": 1e-300, "power_kw": 0e-5},'
        b' {"ts": 1795000001, "power_kw": 1, "fw": "\\ud83d\\ude00"},'
        b' {"ts": 1795000000250, "energy_import_kwh": 0.0}]'
    )
    assert out.deadletters == []
    # a tiny but representable counter stays; 0e-5 is a real zero; a surrogate pair is fine
    assert [r.values for r in out.readings] == [
        {"energy_import_kwh": 1e-300, "power_kw": 0.0},
        {"power_kw": 1.0},
        {"energy_import_kwh": 0.0},
    ]
    assert out.readings[2].ts_ns == 1_795_000_000_250 * 10**6
