"""Ledger entries the accounting applies: green certificates/trades and carbon offsets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

CertificateKind = Literal["gec", "trade"]


@dataclass(frozen=True, slots=True)
class Certificate:
    """A green electricity certificate batch (1 GEC = 1 MWh) or a green-power trade.

    Covers the park's grid imports inside [valid_from, valid_to) (tz-aware datetimes),
    at most `mwh` in total, each MWh applied once.
    """

    id: str
    park: str
    kind: CertificateKind
    mwh: float
    valid_from: datetime
    valid_to: datetime
    source: str = ""


@dataclass(frozen=True, slots=True)
class Offset:
    """A carbon offset (CCER, sink, ...) of `tco2` tonnes, counted on `date` (park local)."""

    id: str
    park: str
    kind: str
    tco2: float
    date: date
    source: str = ""
