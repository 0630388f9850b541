"""One interval's electricity flows: who supplies loads, storage and exports, and how green."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Supply:
    """Boundary and on-site quantities of one interval (kWh; works the same in kW for live)."""

    grid_import: float  # I
    grid_export: float  # X
    renewable: float  # G
    green_direct: float  # D
    certified: float = 0.0  # part of I covered by certificates (market view only)


@dataclass(frozen=True, slots=True)
class Flows:
    """Where the interval's electricity went and its green content (physical and market)."""

    self_consumed_renewable: float  # G_self = max(0, G − X)
    residual_export: float  # X beyond G (came from storage or the bus)
    non_storage_supply: float  # N = I + D + G_self
    fraction_physical: float  # green fraction of N, physical
    fraction_market: float  # green fraction of N, market (certified imports count)
    charge_green_physical: float  # green fraction given to the net storage charge
    charge_green_market: float
    loads: float  # electricity consumed by loads (excl. storage)
    loads_green_physical: float
    loads_green_market: float
    export_green_physical: float  # green in the residual export
    unbalanced: float  # sinks the meters cannot explain (inconsistent data), not counted


def _frac(part: float, whole: float) -> float:
    if whole <= 0.0:
        return 0.0
    return min(1.0, max(0.0, part / whole))


def allocate(
    supply: Supply,
    net_charge: float,
    net_discharge: float,
    discharge_green_physical: float,
    discharge_green_market: float,
) -> Flows:
    """Allocate one interval's sources to its sinks (docs/accounting.md storage provenance).

    Sources: non-storage supply N = I + D + G_self at green fraction (G_self + D)/N, and the
    net storage discharge at the green fraction it carries. Sinks, in order: exports take
    surplus renewables first (G_self); the net storage charge takes non-storage supply (at N's
    fraction), any rest from the discharge; the residual export takes discharge first, then
    N; the loads get what remains. So green is never counted twice and never exceeds loads.
    """
    i, x, g, d = supply.grid_import, supply.grid_export, supply.renewable, supply.green_direct
    g_self = max(0.0, g - x)
    x_res = max(0.0, x - g)
    n = i + d + g_self
    certified = min(max(supply.certified, 0.0), i)
    f_p = _frac(g_self + d, n)
    f_m = _frac(g_self + d + certified, n)
    s = max(0.0, net_discharge)
    fs_p = _frac(discharge_green_physical, s)
    fs_m = _frac(discharge_green_market, s)

    c = max(0.0, net_charge)
    c1 = min(c, n)
    c2 = min(c - c1, s)
    n_rem, s_rem = n - c1, s - c2
    x1 = min(x_res, s_rem)
    x2 = min(x_res - x1, n_rem)
    s_rem -= x1
    n_rem -= x2
    unbalanced = (c - c1 - c2) + (x_res - x1 - x2)
    return Flows(
        self_consumed_renewable=g_self,
        residual_export=x_res,
        non_storage_supply=n,
        fraction_physical=f_p,
        fraction_market=f_m,
        charge_green_physical=_frac(c1 * f_p + c2 * fs_p, c) if c > 0 else f_p,
        charge_green_market=_frac(c1 * f_m + c2 * fs_m, c) if c > 0 else f_m,
        loads=n_rem + s_rem,
        loads_green_physical=n_rem * f_p + s_rem * fs_p,
        loads_green_market=n_rem * f_m + s_rem * fs_m,
        export_green_physical=x1 * fs_p + x2 * f_p,
        unbalanced=unbalanced,
    )
