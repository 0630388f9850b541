"""Chained days kept in the store, so a fresh process continues a park's chain where any
process left it (docs/storage.md, "Day rollups").

Each chained day is stamped with a digest of everything its result depends on: the previous
day's digest (so the start state: storage content, certificate use), the registry entry,
the factor set, the chain's epoch, the day's stored inputs (`StoredInputs.day_key`: change
markers read before the data, corrections) and the certificates and offsets that can act on
that day. A process uses a stored day only when the digest it computes itself is the stamp.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import replace
from datetime import date

import msgspec

from app.accounting import BalanceResult, Certificate, FactorSet, Offset
from app.registry.models import Park
from app.timeutil import to_ns

#: bumped whenever the encoding or the accounting changes: older days stop matching
CHAIN_FORMAT = 1
_EPOCH_DAY = date(1970, 1, 1)

# msgspec: compiled, typed decoding back into the frozen dataclasses, and no code execution
# on load (pickle would let whoever can write the store run code in every API process)
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(BalanceResult)


def chain_kind(fs: FactorSet) -> str:
    """The store `kind` of a factor set's chained days."""
    return f"chain:{fs.name}"


def day_number(day: date) -> int:
    """Days since 1970-01-01 of a local date (the store's `day` for chained days)."""
    return (day - _EPOCH_DAY).days


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def epoch_digest(park_fingerprint: str, fs: FactorSet, epoch: date) -> str:
    """The digest the first chained day continues from."""
    return _sha(f"{CHAIN_FORMAT}|{park_fingerprint}|{fs!r}|{epoch.isoformat()}")


def day_digest(
    prev: str,
    day: date,
    start_ns: int,
    end_ns: int,
    day_key: Hashable,
    certificates: tuple[Certificate, ...],
    offsets: tuple[Offset, ...],
) -> str:
    """The digest of local `day`, [start_ns, end_ns), chained after `prev`.

    Certificates count when their validity overlaps the day (one valid elsewhere changes
    nothing here: its earlier use is in the start state, its later use comes later); offsets
    when they are dated that day."""
    certs = sorted(
        repr(c)
        for c in certificates
        if to_ns(c.valid_from) < end_ns and start_ns < to_ns(c.valid_to)
    )
    offs = sorted(repr(o) for o in offsets if o.date == day)
    return _sha(f"{prev}|{day}|{day_key!r}|{start_ns}|{end_ns}|{certs!r}|{offs!r}")


def encode_result(result: BalanceResult) -> bytes:
    """A chained day's result for the store."""
    return _ENCODER.encode(result)


def decode_result(payload: bytes, park: Park) -> BalanceResult:
    """A chained day's result back, its times in the park's zone as computed (msgpack keeps
    instants, not zones). Raises msgspec.DecodeError / ValidationError on a bad payload."""
    r = _DECODER.decode(payload)
    tz = park.tz
    return replace(
        r,
        start=r.start.astimezone(tz),
        end=r.end.astimezone(tz),
        buckets=tuple(
            replace(b, start=b.start.astimezone(tz), end=b.end.astimezone(tz)) for b in r.buckets
        ),
    )
