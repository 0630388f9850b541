"""Accounting core: pure functions from interval energies to carbon and green-electricity."""

from .balance import IntervalBalance, compute_balance, step_interval
from .buckets import EVERY_VALUES, Every, bucket_edges
from .certificates import (
    CertificateAllocation,
    CertificateUse,
    allocate_certificates,
    certificate_order,
)
from .factors import (
    BUILTIN_FACTOR_SETS,
    CN_2022,
    CN_2023,
    DEFAULT_FACTOR_SET,
    Factor,
    FactorSet,
    FuelFactors,
    get_factor_set,
    register_factor_set,
    validate_factor_set,
    with_oilfield_gas,
)
from .ledger_types import Certificate, Offset
from .live import LiveBalance, live_balance
from .result import BALANCE_FIELDS, BalanceFields, BalanceResult, BucketBalance
from .storage import StorageDeviceState, StorageState
from .totals import IntervalTotals, interval_totals

__all__ = [
    "BALANCE_FIELDS",
    "BUILTIN_FACTOR_SETS",
    "CN_2022",
    "CN_2023",
    "DEFAULT_FACTOR_SET",
    "EVERY_VALUES",
    "BalanceFields",
    "BalanceResult",
    "BucketBalance",
    "Certificate",
    "CertificateAllocation",
    "CertificateUse",
    "Every",
    "Factor",
    "FactorSet",
    "FuelFactors",
    "IntervalBalance",
    "IntervalTotals",
    "LiveBalance",
    "Offset",
    "StorageDeviceState",
    "StorageState",
    "allocate_certificates",
    "bucket_edges",
    "certificate_order",
    "compute_balance",
    "get_factor_set",
    "interval_totals",
    "live_balance",
    "register_factor_set",
    "step_interval",
    "validate_factor_set",
    "with_oilfield_gas",
]
