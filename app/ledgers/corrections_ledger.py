"""The manual-correction ledger (journal entries over stored intervals), in creation order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.corrections.schemas import CorrectionIn, CorrectionRecord
from app.ledgers.entities import Entity, add
from app.ledgers.orm import CorrectionRow
from app.ledgers.tx import Transactions, check_actor, check_park, now

#: Listed in `seq` order, which is the order corrections apply in.
CORRECTIONS: Entity[CorrectionRow, CorrectionRecord] = Entity(
    kind="correction", row=CorrectionRow, record=CorrectionRecord, order=(CorrectionRow.seq,)
)


def add_correction(
    tx: Transactions, park: str, corr: CorrectionIn | Mapping[str, Any], actor: str
) -> CorrectionRecord:
    check_park(park)
    body = corr if isinstance(corr, CorrectionIn) else CorrectionIn.model_validate(corr)

    def build(session: Session) -> CorrectionRow:
        # max + 1 under the write lock: unique, and the order corrections apply in
        last = session.scalar(select(func.max(CorrectionRow.seq)))
        return CorrectionRow(
            id=body.id,
            seq=(last or 0) + 1,
            park=park,
            device=body.device,
            quantity=body.quantity,
            start=body.start,
            end=body.end,
            kind=body.kind,
            amount=body.amount,
            reason=body.reason,
            created_at=now(),
            created_by=check_actor(actor),
        )

    return add(
        tx,
        CORRECTIONS,
        body.id,
        build,
        actor,
        lambda row: {"park": park, "seq": row.seq, **body.model_dump(mode="json")},
    )
