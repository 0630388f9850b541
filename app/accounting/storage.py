"""Storage provenance: per-device energy content and its green share, carried across intervals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StorageDeviceState:
    """What one storage device holds: energy (kWh) and how much of it is green.

    `green_physical_kwh` follows on-site renewables and direct green supply; `green_market_kwh`
    also counts grid imports covered by certificates. Both are ≤ `content_kwh`.
    """

    content_kwh: float = 0.0
    green_physical_kwh: float = 0.0
    green_market_kwh: float = 0.0

    @property
    def green_fraction_physical(self) -> float:
        return self.green_physical_kwh / self.content_kwh if self.content_kwh > 0 else 0.0

    @property
    def green_fraction_market(self) -> float:
        return self.green_market_kwh / self.content_kwh if self.content_kwh > 0 else 0.0


#: device id → state. Missing device = empty (content 0): unknown earlier energy that is later
#: discharged is counted as *not* green ("untracked"), the conservative assumption.
StorageState = Mapping[str, StorageDeviceState]


@dataclass(frozen=True, slots=True)
class StorageStep:
    """One storage device in one interval, after netting and loss accounting (kWh)."""

    device: str
    charge_kwh: float  # measured C
    discharge_kwh: float  # measured S
    passthrough_kwh: float  # min(C, S): charged and discharged in the same interval
    from_content_kwh: float  # net discharge drawn from the tracked content
    untracked_kwh: float  # energy that appeared in the device without a tracked source
    losses_kwh: float
    green_charged_physical_kwh: float
    green_charged_market_kwh: float
    green_discharged_physical_kwh: float
    green_discharged_market_kwh: float
    green_losses_physical_kwh: float
    green_losses_market_kwh: float
    before: StorageDeviceState
    after: StorageDeviceState


def begin_step(
    charge_kwh: float, discharge_kwh: float, state: StorageDeviceState
) -> tuple[float, float, float, float, float, float]:
    """Net charge/discharge and what the discharge takes out of the stored content.

    Returns (net charge, net discharge, from content, untracked, green phys out, green mkt out).
    Charge and discharge inside one interval are netted first (the overlap passes straight
    through and leaves the content — and its green share — as it was).
    """
    through = min(charge_kwh, discharge_kwh)
    c_net = charge_kwh - through
    s_net = discharge_kwh - through
    from_content = min(s_net, state.content_kwh)
    untracked = s_net - from_content
    if state.content_kwh > 0:
        out_phys = from_content * state.green_physical_kwh / state.content_kwh
        out_mkt = from_content * state.green_market_kwh / state.content_kwh
    else:
        out_phys = out_mkt = 0.0
    return c_net, s_net, from_content, untracked, out_phys, out_mkt


def finish_step(
    device: str,
    charge_kwh: float,
    discharge_kwh: float,
    state: StorageDeviceState,
    charge_fraction_physical: float,
    charge_fraction_market: float,
    capacity_kwh: float | None,
    soc_end_pct: float | None,
) -> StorageStep:
    """Apply one interval to one device: discharge, charge at the given green fractions, losses.

    Losses are only known from an end-of-interval state of charge (`soc_end_pct` with a
    capacity) or when the counters would overfill the capacity; they leave at the mixed
    fraction. A reported SOC above the tracked content is untracked (non-green) energy.
    """
    c_net, _s_net, from_content, untracked, out_p, out_m = begin_step(
        charge_kwh, discharge_kwh, state
    )
    content = state.content_kwh - from_content + c_net
    in_p = c_net * charge_fraction_physical
    in_m = c_net * charge_fraction_market
    green_p = max(0.0, state.green_physical_kwh - out_p) + in_p
    green_m = max(0.0, state.green_market_kwh - out_m) + in_m
    if from_content >= state.content_kwh:
        # Emptied before charging: drop rounding residue so an empty battery holds no green.
        green_p, green_m = in_p, in_m
    losses = loss_p = loss_m = 0.0
    target: float | None = None
    if capacity_kwh is not None:
        if soc_end_pct is not None:
            target = capacity_kwh * soc_end_pct / 100.0
        elif content > capacity_kwh:
            target = capacity_kwh
    if target is not None:
        if content > target:
            losses = content - target
            share = losses / content
            loss_p, loss_m = green_p * share, green_m * share
            green_p -= loss_p
            green_m -= loss_m
        else:
            untracked += target - content
        content = target
    green_p = min(max(green_p, 0.0), content)
    green_m = min(max(green_m, 0.0), content)
    return StorageStep(
        device=device,
        charge_kwh=charge_kwh,
        discharge_kwh=discharge_kwh,
        passthrough_kwh=min(charge_kwh, discharge_kwh),
        from_content_kwh=from_content,
        untracked_kwh=untracked,
        losses_kwh=losses,
        green_charged_physical_kwh=in_p,
        green_charged_market_kwh=in_m,
        green_discharged_physical_kwh=out_p,
        green_discharged_market_kwh=out_m,
        green_losses_physical_kwh=loss_p,
        green_losses_market_kwh=loss_m,
        before=state,
        after=StorageDeviceState(content, green_p, green_m),
    )
