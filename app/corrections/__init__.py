"""Manual corrections: journal entries applied on top of stored interval energies."""

from app.corrections.apply import CORRECTED_FLAG, apply_corrections, check_correction
from app.corrections.models import Correction, CorrectionKind

__all__ = [
    "CORRECTED_FLAG",
    "Correction",
    "CorrectionKind",
    "apply_corrections",
    "check_correction",
]
