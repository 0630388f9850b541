"""Canonical content hashes of ledger rows, as recorded in their audit entries (pure)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Double, Integer

from app.ledgers.audit import canonical_json, canonical_ts
from app.ledgers.orm import LEDGER_TABLES, Base, DocumentRow
from app.ledgers.schemas import AuditProblem

LEDGER_TABLE_NAMES = frozenset(t.__tablename__ for t in LEDGER_TABLES)


def _table(row: Base) -> str:
    return str(row.__tablename__)


def row_id(row: Base) -> str:
    """The row's identity in audit entries: its primary key, `/`-joined when composite
    (documents: `kind/name/version`)."""
    if isinstance(row, DocumentRow):
        return f"{row.kind}/{row.name}/{row.version}"
    return str(row.id)  # type: ignore[attr-defined]


def _value(column: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return canonical_ts(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(column.type, Double):
        return float(value)
    if isinstance(column.type, Integer):
        return int(value)
    return value


def row_content(row: Base) -> dict[str, Any]:
    """Every column of the row, by column name, in a backend-independent form: datetimes
    as UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`, dates ISO, doubles as JSON floats."""
    table = row.__table__
    return {c.name: _value(c, getattr(row, c.key)) for c in table.columns}


def row_digest(row: Base) -> str:
    """sha256 hex of canonical JSON `{"table": <table name>, "row": row_content(row)}`."""
    doc = {"table": _table(row), "row": row_content(row)}
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def row_ref(row: Base) -> dict[str, str]:
    """What an audit entry's `details.row` holds: table, id and content hash of the row
    as the change left it."""
    return {"table": _table(row), "id": row_id(row), "sha256": row_digest(row)}


#: (table, row id) → (seq, content hash, park) of the latest audit entry recording that row.
RowRefs = dict[tuple[str, str], tuple[int, str, str | None]]


def collect_row_ref(refs: RowRefs, seq: int, details_text: str) -> None:
    """Note the row an audit entry recorded (`details.row`), if any; later entries win."""
    try:
        details = json.loads(details_text)
    except ValueError:
        return  # reported by the chain check
    ref = details.get("row") if isinstance(details, dict) else None
    if not isinstance(ref, dict):
        return
    table, rid, digest = ref.get("table"), ref.get("id"), ref.get("sha256")
    park = details.get("park")
    if isinstance(table, str) and isinstance(rid, str) and isinstance(digest, str):
        refs[(table, rid)] = (seq, digest, park if isinstance(park, str) else None)


def compare_rows(
    refs: RowRefs, rows: Iterable[tuple[str, str, str, str | None]]
) -> list[AuditProblem]:
    """Match each ledger row (table, id, content hash, park) to the hash its latest audit
    entry recorded: a row without an entry, with a different hash, or an audited row that
    is gone is a problem naming the table and the row."""
    problems: list[AuditProblem] = []
    pending = dict(refs)
    for table, rid, digest, park in rows:
        ref = pending.pop((table, rid), None)
        if ref is None:
            problems.append(
                AuditProblem(
                    seq=0,
                    kind="row_unaudited",
                    table=table,
                    row=rid,
                    park=park,
                    message=f"{table} row {rid!r} has no audit entry: inserted or re-keyed "
                    "outside the application",
                )
            )
        elif ref[1] != digest:
            problems.append(
                AuditProblem(
                    seq=ref[0],
                    kind="row_mismatch",
                    table=table,
                    row=rid,
                    park=park,
                    message=f"{table} row {rid!r} was edited: its content no longer matches "
                    f"the hash recorded by audit seq {ref[0]}",
                )
            )
    for (table, rid), (seq, _, park) in sorted(pending.items(), key=lambda kv: kv[1][0]):
        if table in LEDGER_TABLE_NAMES:
            problems.append(
                AuditProblem(
                    seq=seq,
                    kind="row_deleted",
                    table=table,
                    row=rid,
                    park=park,
                    message=f"{table} row {rid!r} recorded by audit seq {seq} is gone: "
                    "deleted outside the application",
                )
            )
    return problems
