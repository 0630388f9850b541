"""The offset ledger (CCER, sinks, ... in tCO2) over the generic entity helper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.ledgers.entities import Entity, add
from app.ledgers.orm import OffsetRow
from app.ledgers.schemas import OffsetIn, OffsetRecord
from app.ledgers.tx import Transactions, check_actor, check_park, now

OFFSETS: Entity[OffsetRow, OffsetRecord] = Entity(
    kind="offset", row=OffsetRow, record=OffsetRecord, order=(OffsetRow.date, OffsetRow.id)
)


def add_offset(
    tx: Transactions, park: str, offset: OffsetIn | Mapping[str, Any], actor: str
) -> OffsetRecord:
    check_park(park)
    body = offset if isinstance(offset, OffsetIn) else OffsetIn.model_validate(offset)
    return add(
        tx,
        OFFSETS,
        body.id,
        lambda _: OffsetRow(
            id=body.id,
            park=park,
            kind=body.kind,
            tco2=body.tco2,
            date=body.date,
            source=body.source,
            created_at=now(),
            created_by=check_actor(actor),
        ),
        actor,
        lambda _: {"park": park, **body.model_dump(mode="json")},
    )
