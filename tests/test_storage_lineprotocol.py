"""Line-protocol encoder: influxdb-client's Point as oracle, plus the cases where it is lossy."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision

from app.intervals.models import IntervalEnergy
from app.storage.base import WriteBatch
from app.storage.lineprotocol import (
    LineProtocolError,
    encode_line,
    escape_key,
    escape_measurement,
    escape_string,
    format_field_value,
    format_float,
    representable_name,
)
from app.storage.schema import batch_lines, interval_line, reading_line, reading_lines
from app.telemetry.models import DeadLetter, Reading, RejectReason

# The oracle turns \n, \t, \r into two-character escapes that influxd does not decode and adds
# a space after a trailing backslash: outside that domain it is lossy (and we refuse such names),
# so compare inside it.
CONTROL = "".join(map(chr, [*range(32), 127]))
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters=CONTROL)
_special = st.sampled_from(list(",= \\\"'#é日"))
names = st.text(_special | _chars, min_size=1, max_size=20).filter(representable_name)
measurements = names.filter(lambda s: not s.startswith("#"))
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
)
timestamps = st.integers(min_value=-(2**62), max_value=2**62)


@settings(max_examples=200, deadline=None)
@given(
    measurement=measurements,
    tags=st.dictionaries(names, st.one_of(names, st.just("")), max_size=4),
    fields=st.dictionaries(names, field_values, min_size=1, max_size=5),
    ts=timestamps,
)
def test_matches_influxdb_client_point(
    measurement: str, tags: dict[str, str], fields: dict[str, object], ts: int
) -> None:
    p = Point(measurement)
    for k, v in tags.items():
        p.tag(k, v)
    for k, fv in fields.items():
        p.field(k, fv)
    p.time(ts, WritePrecision.NS)
    assert encode_line(measurement, tags, fields, ts) == p.to_line_protocol()  # type: ignore[arg-type]


def test_escapes_by_position() -> None:
    assert escape_measurement("my meas,x=y") == r"my\ meas\,x=y"
    assert escape_key("a b,c=d") == r"a\ b\,c\=d"
    assert escape_key("日本\\x") == "日本\\x"  # inner backslash kept as-is
    assert escape_string('say "hi"\\ \n') == '"say \\"hi\\"\\\\ \n"'


@pytest.mark.parametrize(
    "bad", ["", "a\nb", "ends\\", "\x00a", "\t", "a\rb", "del\x7f", "a\\,b", "x\\ y", "k\\=v"]
)
def test_unrepresentable_names_raise(bad: str) -> None:
    with pytest.raises(LineProtocolError):
        escape_key(bad)
    with pytest.raises(LineProtocolError):
        encode_line("m", {"t": bad or "x"}, {bad or "\n": 1.0}, 1)


def test_floats_are_floats_never_integers() -> None:
    assert format_float(12.0) == "12"  # no `i`: still a float field for influx
    assert format_float(0.1) == "0.1"
    assert format_float(1e16) == "1e+16"
    assert format_float(-1.5e-07) == "-1.5e-07"
    assert format_field_value(7) == "7"  # ints are written as floats, never `7i`
    assert format_field_value(True) == "true"
    assert format_field_value("x") == '"x"'
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(LineProtocolError):
            format_float(bad)


def test_measurement_cannot_start_a_comment() -> None:
    with pytest.raises(LineProtocolError):
        escape_measurement("#m")


def test_point_needs_a_field() -> None:
    with pytest.raises(LineProtocolError):
        encode_line("m", {"t": "x"}, {}, 1)


def test_reading_line_layout() -> None:
    r = Reading(
        "p 1", "d=1", 5, {"energy_kwh": 2.0, "time": 1.5}, reset=True, ts_source="collector"
    )
    assert reading_line(r) == (
        r"reading,device=d\=1,park=p\ 1 energy_kwh=2.0,__time=1.5,"
        r'reset=true,ts_source="collector" 5'
    )
    plain = Reading("p", "d", 6, {"power_kw": -3.25})
    assert reading_line(plain) == "reading,device=d,park=p power_kw=-3.25 6"


def test_interval_line_layout() -> None:
    iv = IntervalEnergy("p", "pv1", "pv", 0, 900_000_000_000, {"energy_kwh": 12.5}, True, ("gap",))
    assert interval_line(iv) == (
        'interval_energy,device=pv1,park=p,role=pv energy_kwh=12.5,estimated=true,flags="gap",'
        "duration_s=900 0"
    )


def test_deadletters_in_the_same_ns_get_distinct_times() -> None:
    d = DeadLetter(100, "t", None, None, RejectReason.INVALID_JSON, "x", b"{")
    other_reason = DeadLetter(100, "t", None, None, RejectReason.NON_FINITE, "x", b"{")
    lines = batch_lines(WriteBatch(deadletters=[d, d, other_reason, d]))
    assert [ln.rsplit(" ", 1)[1] for ln in lines] == ["100", "101", "100", "102"]


def test_batch_encoding_equals_one_line_at_a_time() -> None:
    # the batch loop is inlined by hand for speed (bench/ingest.py measures it): it must
    # write what the one-reading encoder writes, whatever the reading
    readings = [
        Reading("p", "d", 1, {"energy_kwh": 2.0, "power_kw": -3.25}),
        Reading("p", "d", 2, {"energy_kwh": 2.5}, reset=True),
        Reading("p", "d", 3, {"power_kw": 1.0}, ts_source="collector"),
        Reading("p", "d", 4, {}, reset=True),
        Reading("p", "d", 5, {"time": 1.5, "flags": 2.0, "value_x": 1e-7, "cos_phi": 1e12}),
        Reading("p 1", "d=1", 6, {"energy_kwh": 0.1 + 0.2}),
    ]
    batch = [*readings, *readings]  # the second time through, every cache is warm
    assert reading_lines(batch) == [reading_line(r) for r in batch]
    for bad in (float("inf"), float("nan"), -float("inf")):
        with pytest.raises(LineProtocolError):
            reading_lines([readings[0], Reading("p", "d", 7, {"power_kw": 1.0, "x_y": bad})])
    with pytest.raises(LineProtocolError):
        reading_lines([Reading("p", "d", 8, {})])
