"""Battery storage: content bounded by capacity and a simple price/surplus dispatch rule."""

from __future__ import annotations

from dataclasses import dataclass

#: Liaoning time-of-use periods (local time): evening peak and night valley.
PEAK_HOURS = (17.0, 21.0)
VALLEY_HOURS = (23.0, 7.0)


def is_peak(local_hour: float) -> bool:
    return PEAK_HOURS[0] <= local_hour < PEAK_HOURS[1]


def is_valley(local_hour: float) -> bool:
    return local_hour >= VALLEY_HOURS[0] or local_hour < VALLEY_HOURS[1]


@dataclass(slots=True)
class Battery:
    """Energy content in kWh; all losses are booked on charging.

    So `content += charge_kwh * efficiency - discharge_kwh` exactly, and the counters
    `energy_charge_kwh` / `energy_discharge_kwh` are the AC energies at the meter.
    """

    capacity_kwh: float
    max_kw: float
    content_kwh: float
    efficiency: float = 0.90
    min_soc: float = 0.05
    max_soc: float = 0.95

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.content_kwh / self.capacity_kwh

    def max_charge_kw(self, step_h: float) -> float:
        room = max(0.0, self.max_soc * self.capacity_kwh - self.content_kwh)
        return min(self.max_kw, room / self.efficiency / step_h)

    def max_discharge_kw(self, step_h: float) -> float:
        avail = max(0.0, self.content_kwh - self.min_soc * self.capacity_kwh)
        return min(self.max_kw, avail / step_h)

    def dispatch_kw(
        self, surplus_kw: float, local_hour: float, grid_charge_tonight: bool, step_h: float
    ) -> tuple[float, float]:
        """(charge_kw, discharge_kw) for one step; at most one of them is non-zero.

        Rule: store renewable surplus; cover the deficit at the evening peak; on nights the
        operator chose to (seeded, about half of them), charge from the grid at valley price
        up to 60 % so the morning peak is covered.
        """
        if surplus_kw > 0.0:
            return min(surplus_kw, self.max_charge_kw(step_h)), 0.0
        if is_peak(local_hour):
            return 0.0, min(-surplus_kw, self.max_discharge_kw(step_h))
        if grid_charge_tonight and is_valley(local_hour) and self.soc_pct < 60.0:
            room_kw = (0.6 * self.capacity_kwh - self.content_kwh) / self.efficiency / step_h
            return max(0.0, min(0.5 * self.max_kw, room_kw, self.max_charge_kw(step_h))), 0.0
        return 0.0, 0.0

    def apply(self, charge_kwh: float, discharge_kwh: float) -> None:
        self.content_kwh += charge_kwh * self.efficiency - discharge_kwh
