"""WriteBatch: lossless spool JSON, length, split and concat."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from app.intervals.models import IntervalEnergy
from app.storage.base import WriteBatch
from app.telemetry.models import DeadLetter, Reading, RejectReason

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
floats = st.floats(allow_nan=False)
values = st.dictionaries(text, floats, max_size=4)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)

readings = st.builds(
    Reading,
    park=text,
    device=text,
    ts_ns=ints,
    values=values,
    reset=st.booleans(),
    ts_source=st.sampled_from(["device", "collector"]),
)
intervals = st.builds(
    IntervalEnergy,
    park=text,
    device=text,
    role=text,
    start_ns=ints,
    end_ns=ints,
    values=values,
    estimated=st.booleans(),
    flags=st.lists(text, max_size=3).map(tuple),
)
deadletters = st.builds(
    DeadLetter,
    received_ns=ints,
    topic=text,
    park=st.none() | text,
    device=st.none() | text,
    reason=st.sampled_from(list(RejectReason)),
    detail=text,
    raw=st.binary(max_size=64),
)
batches = st.builds(
    WriteBatch,
    readings=st.lists(readings, max_size=5),
    intervals=st.lists(intervals, max_size=5),
    deadletters=st.lists(deadletters, max_size=5),
)


@settings(max_examples=150, deadline=None)
@given(batches)
def test_json_round_trip_is_lossless(batch: WriteBatch) -> None:
    back = WriteBatch.from_json(batch.to_json())
    assert back == batch
    # exact floats, bit for bit (== would also accept -0.0 for 0.0)
    for a, b in zip(batch.readings, back.readings, strict=True):
        for k, v in a.values.items():
            assert math.copysign(1, v) == math.copysign(1, b.values[k])
            assert v.hex() == b.values[k].hex()


def test_non_finite_values_survive_the_spool() -> None:
    # The encoder refuses them later (quarantine); the spool itself must not lose them.
    r = Reading("p", "d", 1, {"a": math.inf, "b": -math.inf, "c": math.nan})
    back = WriteBatch.from_json(WriteBatch([r]).to_json()).readings[0]
    assert back.values["a"] == math.inf and back.values["b"] == -math.inf
    assert math.isnan(back.values["c"])


def test_len_empty_split_concat() -> None:
    rs = [Reading("p", "d", i, {"x": float(i)}) for i in range(3)]
    ivs = [IntervalEnergy("p", "d", "pv", i, i + 1, {"energy_kwh": 1.0}) for i in range(2)]
    ds = [DeadLetter(i, "t", None, None, RejectReason.TOO_LARGE, "", b"") for i in range(2)]
    b = WriteBatch(rs, ivs, ds)
    assert len(b) == 7 and not b.is_empty and WriteBatch().is_empty
    a, c = b.split()
    assert (len(a), len(c)) == (3, 4)
    assert a.readings == rs and a.intervals == [] and c.intervals == ivs and c.deadletters == ds
    assert WriteBatch.concat([a, c]) == b
    one, rest = WriteBatch(readings=rs[:1]).split()
    assert len(one) == 0 and len(rest) == 1
