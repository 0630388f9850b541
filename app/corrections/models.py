"""The `Correction` journal entry as the pure apply step sees it (UTC epoch ns, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CorrectionKind = Literal["set", "add"]


@dataclass(frozen=True, slots=True)
class Correction:
    """One manual correction of one device's counter over [start_ns, end_ns).

    `set`: the device's total of `quantity` over the window becomes `amount`; `add`: `amount`
    (may be negative) is added. Either way the amount is spread over the window's intervals in
    proportion to their length. `seq` orders corrections: they apply in creation order.
    """

    id: str
    park: str
    device: str
    quantity: str
    start_ns: int
    end_ns: int
    kind: CorrectionKind
    amount: float
    seq: int = 0
