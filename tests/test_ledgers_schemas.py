"""Validation of ledger request bodies (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from app.ledgers import ApiRole, CertificateIn, OffsetIn, role_allows
from app.ledgers.orm import UTCDateTime

GOOD_CERT = {
    "id": "GEC-2025:0001.a_b",
    "kind": "gec",
    "mwh": 12.5,
    "valid_from": "2025-01-01T00:00:00+08:00",
    "valid_to": "2025-02-01T00:00:00+08:00",
    "source": "国家绿证核发交易系统",
}


def cert(**overrides: object) -> dict[str, object]:
    return {**GOOD_CERT, **overrides}


def test_good_certificate_parses_with_offset() -> None:
    c = CertificateIn.model_validate(GOOD_CERT)
    assert c.valid_from == datetime(2024, 12, 31, 16, 0, tzinfo=UTC)
    assert c.kind == "gec"
    assert CertificateIn.model_validate(cert(kind="trade")).kind == "trade"


@pytest.mark.parametrize("mwh", [0, -1, float("nan"), float("inf"), "lots"])
def test_mwh_must_be_positive_finite(mwh: object) -> None:
    with pytest.raises(ValidationError):
        CertificateIn.model_validate(cert(mwh=mwh))


def test_naive_datetime_refused_with_clear_message() -> None:
    with pytest.raises(ValidationError) as info:
        CertificateIn.model_validate(cert(valid_from="2025-01-01T00:00:00"))
    assert "timezone" in str(info.value)
    with pytest.raises(ValidationError):
        CertificateIn.model_validate(cert(valid_to=datetime(2025, 3, 1)))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2025-02-01T00:00:00+08:00", "2025-02-01T00:00:00+08:00"),  # empty period
        ("2025-02-01T00:00:00+08:00", "2025-01-01T00:00:00+08:00"),  # reversed
        # same instant written in two zones: still empty
        ("2025-01-01T08:00:00+08:00", "2025-01-01T00:00:00Z"),
    ],
)
def test_period_must_be_non_empty(start: str, end: str) -> None:
    with pytest.raises(ValidationError, match="valid_from must be before valid_to"):
        CertificateIn.model_validate(cert(valid_from=start, valid_to=end))


@pytest.mark.parametrize("kind", ["rec", "GEC", "", None])
def test_kind_enum(kind: object) -> None:
    with pytest.raises(ValidationError):
        CertificateIn.model_validate(cert(kind=kind))


@pytest.mark.parametrize("bad_id", ["", "has space", "a/b", "x" * 129, "中文", "a\n"])
def test_bad_ids_refused(bad_id: str) -> None:
    with pytest.raises(ValidationError):
        CertificateIn.model_validate(cert(id=bad_id))
    with pytest.raises(ValidationError):
        OffsetIn.model_validate({"id": bad_id, "kind": "ccer", "tco2": 1, "date": "2025-01-01"})


def test_longest_id_accepted() -> None:
    assert CertificateIn.model_validate(cert(id="x" * 128)).id == "x" * 128


def test_unknown_field_refused() -> None:
    with pytest.raises(ValidationError, match="valid_form"):
        CertificateIn.model_validate(cert(valid_form="2025-01-01T00:00:00Z"))


def test_offset_validation() -> None:
    o = OffsetIn.model_validate(
        {"id": "CCER-1", "kind": "ccer", "tco2": 3.5, "date": "2025-06-30", "source": "x"}
    )
    assert o.date == date(2025, 6, 30)
    for bad in (0, -2.0, float("nan")):
        with pytest.raises(ValidationError):
            OffsetIn.model_validate({"id": "o", "kind": "ccer", "tco2": bad, "date": "2025-06-30"})
    with pytest.raises(ValidationError):
        OffsetIn.model_validate({"id": "o", "kind": "ccer", "tco2": 1, "date": "30/06/2025"})


def test_orm_column_refuses_naive_and_stores_utc() -> None:
    col = UTCDateTime()

    class _Dialect:
        name = "sqlite"

    dialect = _Dialect()
    with pytest.raises(ValueError, match="naive"):
        col.process_bind_param(datetime(2025, 1, 1), dialect)  # type: ignore[arg-type]
    cst = timezone(timedelta(hours=8))
    stored = col.process_bind_param(datetime(2025, 1, 1, 8, tzinfo=cst), dialect)  # type: ignore[arg-type]
    assert stored == datetime(2025, 1, 1, 0, 0)  # UTC wall time
    back = col.process_result_value(stored, dialect)  # type: ignore[arg-type]
    assert back == datetime(2025, 1, 1, 0, 0, tzinfo=UTC) and back.tzinfo is UTC


def test_role_ordering() -> None:
    order = ["viewer", "auditor", "manager", "admin"]
    for i, have in enumerate(order):
        for j, need in enumerate(order):
            assert role_allows(have, need) is (i >= j), (have, need)
    assert ApiRole("admin").allows(ApiRole.VIEWER)
    assert not ApiRole.VIEWER.allows("auditor")
    assert role_allows(None, "viewer") is False
    with pytest.raises(ValueError):
        role_allows("root", "viewer")
