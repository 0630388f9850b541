"""Zero-carbon park evaluation report: indicators (report.py), XLSX/PDF rendering, route."""

from .models import EvaluationReport
from .report import (
    DEFAULT_CONFIG,
    DEFAULT_SIZE_BANDS,
    EvaluationConfig,
    SizeBand,
    build_report,
    canonical_json,
    report_hash,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SIZE_BANDS",
    "EvaluationConfig",
    "EvaluationReport",
    "SizeBand",
    "build_report",
    "canonical_json",
    "report_hash",
]
