"""The ledger database's revisions, oldest first (`down_revision` links them)."""
