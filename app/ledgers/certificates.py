"""The certificate ledger (GEC batches, green-power trades) over the generic entity helper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.ledgers.entities import Entity, add
from app.ledgers.orm import CertificateRow
from app.ledgers.schemas import CertificateIn, CertificateRecord
from app.ledgers.tx import Transactions, check_actor, check_park, now

CERTIFICATES: Entity[CertificateRow, CertificateRecord] = Entity(
    kind="certificate",
    row=CertificateRow,
    record=CertificateRecord,
    order=(CertificateRow.valid_from, CertificateRow.id),
)


def add_certificate(
    tx: Transactions, park: str, cert: CertificateIn | Mapping[str, Any], actor: str
) -> CertificateRecord:
    check_park(park)
    body = cert if isinstance(cert, CertificateIn) else CertificateIn.model_validate(cert)
    return add(
        tx,
        CERTIFICATES,
        body.id,
        lambda _: CertificateRow(
            id=body.id,
            park=park,
            kind=body.kind,
            mwh=body.mwh,
            valid_from=body.valid_from,
            valid_to=body.valid_to,
            source=body.source,
            created_at=now(),
            created_by=check_actor(actor),
        ),
        actor,
        lambda _: {"park": park, **body.model_dump(mode="json")},
    )
