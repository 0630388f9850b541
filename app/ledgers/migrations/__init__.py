"""Alembic migrations of the ledger database (docs/architecture.md): `env.py` runs them on the
connection `app.ledgers.engine.create_schema` hands over; one file per revision in versions/."""
