"""Day-by-day balance chain from a fixed epoch: storage state and certificate use carried over."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, timedelta

from app.accounting import BalanceFields, BalanceResult
from app.accounting.result import Sums
from app.accounting.storage import StorageDeviceState

_SUM_NAMES = tuple(f.name for f in fields(Sums))


def sums_of(bf: BalanceFields) -> Sums:
    """The additive sums behind one bucket's fields (to add buckets and re-derive ratios)."""
    s = Sums()
    for name in _SUM_NAMES:
        if name == "energy_kgce":
            s.energy_kgce = bf.energy_tce * 1000.0
        elif name == "submeter_kwh":
            s.submeter_kwh = dict(bf.submeter_kwh)
        else:
            setattr(s, name, getattr(bf, name))
    return s


@dataclass(frozen=True, slots=True)
class ChainDay:
    """One local day: its balance, computed from the chain state at its midnight, and the
    identity of the stored data it was computed from (`StoredInputs.day_key`)."""

    day: date
    start_ns: int
    end_ns: int
    key: Hashable
    result: BalanceResult
    #: `chain_store.day_digest`: identity of everything `result` depends on, for the store
    digest: str = ""
    #: `sums_of` the day's bucket, once (answers add days up; never mutated)
    sums: Sums = field(default_factory=Sums)

    @classmethod
    def of(
        cls,
        day: date,
        start_ns: int,
        end_ns: int,
        key: Hashable,
        result: BalanceResult,
        digest: str,
    ) -> ChainDay:
        return cls(day, start_ns, end_ns, key, result, digest, sums_of(result.buckets[0].fields))


@dataclass(slots=True)
class Chain:
    """Days of one park and factor set, contiguous from `epoch`.

    The state at a midnight (storage content and green shares, certificate kWh used so far)
    is the end state of the previous day, so every day is computed exactly once from the
    epoch whatever window a request asks for: answers do not depend on the window. The owner
    truncates the chain at the first day whose inputs changed; readers take `snapshot()`.
    """

    epoch: date
    days: list[ChainDay] = field(default_factory=list)

    def snapshot(self) -> Chain:
        """A copy that later truncation or extension of this chain leaves alone."""
        return Chain(self.epoch, list(self.days))

    def end_digest(self, first: str) -> str:
        """The digest the next chained day continues from (`first` for an empty chain)."""
        return self.days[-1].digest if self.days else first

    @property
    def end_day(self) -> date:
        """First day not in the chain."""
        return self.days[-1].day + timedelta(days=1) if self.days else self.epoch

    def index(self, day: date) -> int | None:
        i = (day - self.epoch).days
        return i if 0 <= i < len(self.days) else None

    def state_at(self, day: date) -> tuple[Mapping[str, StorageDeviceState], Mapping[str, float]]:
        """Storage state and certificate use at the midnight starting `day` (≤ end_day)."""
        i = (day - self.epoch).days
        if i <= 0 or not self.days:
            return {}, {}
        prev = self.days[min(i, len(self.days)) - 1].result
        return prev.storage_state, prev.certificates_used_kwh

    def truncate(self, day: date) -> None:
        """Forget `day` and every later day (their start state may have changed)."""
        i = (day - self.epoch).days
        if i < len(self.days):
            del self.days[max(0, i) :]
