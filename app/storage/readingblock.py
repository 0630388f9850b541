"""The embedded store's compact block of raw readings: one device's readings of one hour as bytes.

Why hand-written: the store keeps every raw reading for the auditors, and one SQLite row per
reading costs ~135 B on disk (docs/storage.md, "Size on disk and retention"). The well-kept
codecs for numeric columns (pcodec, numcodecs, blosc2) all work on numpy arrays: numpy and a
compiled codec would become runtime dependencies of the collector, and the block around them
(value names, flags, readings without some values, merging) would still be ours. pcodec was
measured on the same data: ~1.4 B per reading smaller than this codec (docs/storage.md), both
well under the 16 B target. DuckDB or Parquet would be a second storage engine beside SQLite.
What is here is the usual column layout of a time-series block, built from the standard
library (`array`, `zlib`, `json`) so that the per-value work runs in C:

- timestamps: delta of delta (a steady one-a-minute stream becomes zeros);
- each value name is one column; a column whose values are all exact decimals with at most
  `MAX_DECIMALS` digits (what meters send: 0.01 kWh, 0.001 kW) is kept as scaled integers,
  delta-coded (a counter becomes its small increments); any other column keeps the exact
  float64 bits, XOR-ed with the previous value (Gorilla's idea: close values share bits);
- integers are zigzag-coded, stored as 8-byte columns "byte-shuffled" (all first bytes, then
  all second bytes, ...: mostly zero planes) and the whole block is deflated with zlib.

Every value is checked to decode to the same bits before it is stored as an integer, so a
block round-trips exactly (`-0.0`, subnormals, 1e300 included); NaN and ±inf are refused
(`NonFiniteValue`) as everywhere in the stores. tests/test_storage_readingblock.py checks the
round trip and the merge rules with hypothesis.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

#: the block span: one device's readings of one UTC hour (`ts_ns // BLOCK_NS`)
BLOCK_NS = 3_600 * 1_000_000_000
#: a column is kept as scaled integers when every value is an exact decimal with this many
#: digits after the point at most (and its scaled magnitude is below 2**61)
MAX_DECIMALS = 6

_FORMAT = 1
_MASK64 = (1 << 64) - 1
#: scaled integers stay below this, so their deltas and zigzag codes fit in 64 bits
_MAX_INT = 1 << 61
_RESET = 1
_COLLECTOR = 2


class NonFiniteValue(ValueError):
    """A value is NaN or infinite: no store keeps those."""


@dataclass(slots=True)
class Point:
    """One stored reading of a block: time, values, and the two sticky flags."""

    ts_ns: int
    values: dict[str, float]
    reset: bool = False
    collector: bool = False

    def merge(self, later: Point) -> None:
        """Apply a later write of the same time: values merge by name (the later one wins),
        `reset` and the collector stamp stay set once written (like InfluxDB fields)."""
        self.values.update(later.values)
        self.reset = self.reset or later.reset
        self.collector = self.collector or later.collector


def merged(earlier: Point, later: Point) -> Point:
    """A new point: `earlier` with the later write of the same time applied (`Point.merge`)."""
    out = Point(earlier.ts_ns, dict(earlier.values), earlier.reset, earlier.collector)
    out.merge(later)
    return out


def merge_points(points: Iterable[Point]) -> list[Point]:
    """`points` (in write order) as one point per time, time-ordered, later writes merged in."""
    by_ts: dict[int, Point] = {}
    for p in points:
        have = by_ts.get(p.ts_ns)
        if have is None:
            by_ts[p.ts_ns] = Point(p.ts_ns, dict(p.values), p.reset, p.collector)
        else:
            have.merge(p)
    return [by_ts[t] for t in sorted(by_ts)]


def _zigzag(values: Iterable[int]) -> array[int]:
    return array("Q", [((v << 1) ^ (v >> 63)) & _MASK64 for v in values])


def _unzigzag(raw: array[int]) -> list[int]:
    return [(v >> 1) ^ -(v & 1) for v in raw]


def _shuffle(col: array[int]) -> bytes:
    b = col.tobytes()
    return b"".join(b[i::8] for i in range(8))


def _unshuffle(data: bytes, n: int) -> array[int]:
    out = bytearray(8 * n)
    for i in range(8):
        out[i::8] = data[i * n : (i + 1) * n]
    col = array("Q")
    col.frombytes(bytes(out))
    return col


def _deltas(xs: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *xs], xs, strict=False)]


def _undeltas(ds: list[int]) -> list[int]:
    out = []
    acc = 0
    for d in ds:
        acc += d
        out.append(acc)
    return out


def _scaled(col: list[float]) -> tuple[int, list[int]] | None:
    """(decimals, integers) with `n / 10**decimals` giving back every value's exact bits, the
    fewest decimals that do; None when no number of decimals up to `MAX_DECIMALS` does."""
    if not col:
        return 0, []
    big = max(max(col), -min(col))
    if col.count(0.0) and any(v == 0.0 and math.copysign(1.0, v) < 0 for v in col):
        return None  # -0.0 has no integer
    k = 0
    while k <= MAX_DECIMALS:  # most columns share one resolution: start from the first value's
        scale = 10**k
        if big * scale >= _MAX_INT:
            return None
        first = col[0]
        if round(first * scale) / scale != first:
            k += 1
            continue
        ints = [round(v * scale) for v in col]
        if all(n / scale == v for n, v in zip(ints, col, strict=True)):
            return k, ints
        k += 1
    return None


def encode(points: list[Point]) -> bytes:
    """One block's bytes. `points`: distinct times, ascending (see `merge_points`)."""
    n = len(points)
    names: dict[str, int] = {}
    shapes: dict[tuple[int, ...], int] = {}
    shape_ids: list[int] = []
    cols: list[list[float]] = []
    flags = bytearray(n)
    for i, p in enumerate(points):
        shape = []
        for name, v in p.values.items():
            if not math.isfinite(v):
                raise NonFiniteValue(f"non-finite value {name}={v!r} at {p.ts_ns}")
            j = names.get(name)
            if j is None:
                j = names[name] = len(names)
                cols.append([])
            cols[j].append(v)
            shape.append(j)
        shape_ids.append(shapes.setdefault(tuple(shape), len(shapes)))
        flags[i] = (_RESET if p.reset else 0) | (_COLLECTOR if p.collector else 0)
    ts = [p.ts_ns for p in points]
    first_ns = ts[0] if ts else 0
    if ts and ts[-1] - first_ns >= _MAX_INT:
        raise ValueError("a block spans at most 2**61 ns (the store's blocks are one hour)")
    ts_dd = _deltas(_deltas([t - first_ns for t in ts]))
    sections = [_shuffle(_zigzag(ts_dd)), bytes(flags)]
    if len(shapes) > 1:
        sections.append(_shuffle(array("Q", shape_ids)))
    scales: list[int] = []
    for col in cols:
        found = _scaled(col)
        if found is not None:
            scales.append(found[0])
            sections.append(_shuffle(_zigzag(_deltas(found[1]))))
        else:
            scales.append(-1)
            bits = array("Q")
            bits.frombytes(struct.pack(f"<{len(col)}d", *col))
            sections.append(
                _shuffle(array("Q", [a ^ b for a, b in zip([0, *bits], bits, strict=False)]))
            )
    head = json.dumps(
        [_FORMAT, n, first_ns, list(names), [list(s) for s in shapes], scales],
        separators=(",", ":"),
    ).encode("utf-8")
    body = b"".join(sections)
    return zlib.compress(struct.pack("<I", len(head)) + head + body, 6)


def decode(data: bytes) -> list[Point]:
    """The points of a block, time-ordered (`encode`'s inverse)."""
    raw = zlib.decompress(data)
    (head_len,) = struct.unpack_from("<I", raw)
    fmt, n, first_ns, names, shape_list, scales = json.loads(raw[4 : 4 + head_len])
    if fmt != _FORMAT:
        raise ValueError(f"unknown reading block format {fmt!r}")
    pos = 4 + head_len

    def take(size: int) -> bytes:
        nonlocal pos
        out = raw[pos : pos + size]
        pos += size
        return out

    ts = [first_ns + t for t in _undeltas(_undeltas(_unzigzag(_unshuffle(take(8 * n), n))))]
    flags = take(n)
    shapes: list[list[int]] = shape_list
    shape_ids = list(_unshuffle(take(8 * n), n)) if len(shapes) > 1 else [0] * n
    counts = [0] * len(names)
    for sid in shape_ids:
        for j in shapes[sid]:
            counts[j] += 1
    cols: list[list[float]] = []
    for j, k in enumerate(scales):
        m = counts[j]
        col = _unshuffle(take(8 * m), m)
        if k >= 0:
            scale = 10**k
            cols.append([v / scale for v in _undeltas(_unzigzag(col))])
        else:
            bits = _undeltas_xor(col)
            cols.append(list(struct.unpack(f"<{m}d", array("Q", bits).tobytes())))
    it = [iter(c) for c in cols]
    named = [(names[j], it[j]) for j in range(len(names))]
    out = []
    for i in range(n):
        values = {named[j][0]: next(named[j][1]) for j in shapes[shape_ids[i]]}
        out.append(Point(ts[i], values, bool(flags[i] & _RESET), bool(flags[i] & _COLLECTOR)))
    return out


def _undeltas_xor(col: array[int]) -> list[int]:
    out = []
    acc = 0
    for x in col:
        acc ^= x
        out.append(acc)
    return out
