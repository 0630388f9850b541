"""Certificates and trades allocated to grid imports: in validity, ≤ imports, each MWh once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .buckets import to_ns
from .ledger_types import Certificate

KWH_PER_MWH = 1000.0


@dataclass(frozen=True, slots=True)
class CertificateUse:
    """One line of the audit trail: `kwh` of certificate `certificate_id` covered that interval."""

    certificate_id: str
    start_ns: int
    end_ns: int
    kwh: float


@dataclass(frozen=True, slots=True)
class CertificateAllocation:
    """Result of allocating certificates over a chronological run of intervals."""

    #: interval start_ns → kWh of grid import covered
    applied_kwh: Mapping[int, float]
    #: the trail, chronological, then in allocation order
    trail: tuple[CertificateUse, ...]
    #: certificate id → kWh used in total (including `used_before_kwh`)
    used_kwh: Mapping[str, float]


def certificate_order(certificates: Iterable[Certificate]) -> list[Certificate]:
    """Deterministic order of use: earliest `valid_to` first, then id."""
    return sorted(certificates, key=lambda c: (to_ns(c.valid_to), c.id))


def allocate_certificates(
    imports: Sequence[tuple[int, int, float]],
    certificates: Iterable[Certificate],
    park_id: str,
    used_before_kwh: Mapping[str, float] | None = None,
) -> CertificateAllocation:
    """Allocate certificates to grid imports, interval by interval, in time order.

    `imports` is (start_ns, end_ns, grid_import_kwh) per interval. An interval is eligible for
    a certificate when it lies inside [valid_from, valid_to) (start ≥ valid_from and
    end ≤ valid_to). Each interval takes certificates in `certificate_order` until its import
    is covered; a certificate is never used beyond its `mwh`. Certificates of another park
    are ignored (a certificate belongs to one park, so it is never applied twice across parks).

    The allocation of an interval depends on every earlier import the certificate could have
    covered, so the caller must pass intervals from the earliest `valid_from` of the
    certificates concerned (or pass the usage so far as `used_before_kwh`). Then the answer
    does not depend on the query window.
    """
    certs = [c for c in certificate_order(certificates) if c.park == park_id and c.mwh > 0]
    for c in certs:
        if c.valid_from.tzinfo is None or c.valid_to.tzinfo is None:
            raise ValueError(f"certificate {c.id!r}: valid_from/valid_to must be time-zone aware")
    bounds = [(to_ns(c.valid_from), to_ns(c.valid_to)) for c in certs]
    used: dict[str, float] = {c.id: 0.0 for c in certs}
    if used_before_kwh:
        for cid, kwh in used_before_kwh.items():
            if cid in used:
                used[cid] = max(0.0, kwh)
    remaining = [max(0.0, c.mwh * KWH_PER_MWH - used[c.id]) for c in certs]
    applied: dict[int, float] = {}
    trail: list[CertificateUse] = []
    for start_ns, end_ns, imp in sorted(imports):
        need = max(0.0, imp)
        if need <= 0.0:
            continue
        covered = 0.0
        for k, cert in enumerate(certs):
            if remaining[k] <= 0.0:
                continue
            lo, hi = bounds[k]
            if start_ns < lo or end_ns > hi:
                continue
            take = min(remaining[k], need - covered)
            if take <= 0.0:
                break
            remaining[k] -= take
            used[cert.id] += take
            covered += take
            trail.append(CertificateUse(cert.id, start_ns, end_ns, take))
            if covered >= need:
                break
        if covered > 0.0:
            applied[start_ns] = applied.get(start_ns, 0.0) + covered
    return CertificateAllocation(applied, tuple(trail), used)
