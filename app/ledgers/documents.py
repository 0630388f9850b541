"""Versioned JSON documents (factor-set overrides, registry edits): every version kept."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from app.ledgers.audit import canonical_json
from app.ledgers.entities import append_row
from app.ledgers.errors import VersionConflictError
from app.ledgers.orm import DocumentRow
from app.ledgers.schemas import DocumentVersion
from app.ledgers.tx import Transactions, check_actor, now

#: Document kinds the service uses; others are allowed (same `[a-z_]` form).
FACTOR_SET_KIND = "factor_set"
REGISTRY_KIND = "registry"
REGISTRY_DOC_NAME = "parks"

_DOC_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_DOC_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def to_version(row: DocumentRow) -> DocumentVersion:
    return DocumentVersion(
        kind=row.kind,
        name=row.name,
        version=row.version,
        body=json.loads(row.body),
        created_at=row.created_at,
        created_by=row.created_by,
        comment=row.comment,
    )


def put(
    tx: Transactions,
    kind: str,
    name: str,
    body: Mapping[str, Any],
    actor: str,
    *,
    comment: str,
    expected_version: int | None,
    details: Mapping[str, Any] | None,
) -> DocumentVersion:
    """Append version n + 1 and its `<kind>.put` audit entry; VersionConflictError when
    `expected_version` is given and is not the current one (0 = none yet)."""
    if not _DOC_KIND_RE.fullmatch(kind):
        raise ValueError(f"invalid document kind {kind!r}")
    if not _DOC_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid document name {name!r}")
    text_body = canonical_json(dict(body))
    with tx.write() as session:
        current = session.scalar(
            select(func.max(DocumentRow.version)).where(
                DocumentRow.kind == kind, DocumentRow.name == name
            )
        )
        current_version = current or 0
        if expected_version is not None and expected_version != current_version:
            raise VersionConflictError(
                f"{kind} {name!r} is at version {current_version}, not {expected_version}"
            )
        row = DocumentRow(
            kind=kind,
            name=name,
            version=current_version + 1,
            body=text_body,
            created_at=now(),
            created_by=check_actor(actor),
            comment=comment[:500],
        )
        append_row(
            session,
            row,
            actor,
            f"{kind}.put",
            f"{kind}/{name}",
            {
                "kind": kind,
                "name": name,
                "version": row.version,
                "body_sha256": hashlib.sha256(text_body.encode("utf-8")).hexdigest(),
                "comment": row.comment,
                **(details or {}),
            },
        )
        return to_version(row)


def get(tx: Transactions, kind: str, name: str, version: int | None) -> DocumentVersion | None:
    stmt = select(DocumentRow).where(DocumentRow.kind == kind, DocumentRow.name == name)
    if version is None:
        stmt = stmt.order_by(DocumentRow.version.desc()).limit(1)
    else:
        stmt = stmt.where(DocumentRow.version == version)
    with tx.read() as session:
        row = session.scalar(stmt)
        return None if row is None else to_version(row)


def latest_version(tx: Transactions, kind: str, name: str) -> int:
    stmt = select(func.max(DocumentRow.version)).where(
        DocumentRow.kind == kind, DocumentRow.name == name
    )
    with tx.read() as session:
        return session.scalar(stmt) or 0


def names(tx: Transactions, kind: str) -> list[str]:
    stmt = select(DocumentRow.name).where(DocumentRow.kind == kind).distinct()
    with tx.read() as session:
        return sorted(session.scalars(stmt))


def versions(tx: Transactions, kind: str, name: str) -> list[DocumentVersion]:
    stmt = (
        select(DocumentRow)
        .where(DocumentRow.kind == kind, DocumentRow.name == name)
        .order_by(DocumentRow.version)
    )
    with tx.read() as session:
        return [to_version(r) for r in session.scalars(stmt)]
