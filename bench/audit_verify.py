"""Cost of `lingtan audit verify` with every ledger row checked, beside the chain alone.

    python bench/audit_verify.py [--rows 5000] [--db-url URL]

Writes `rows` certificates and `rows` offsets (one audit entry each) into a fresh SQLite file
(or the given database), then times: the chain alone (`verify_chain` over the entries: the
check before rows were hashed, the baseline), the full `verify_audit` (chain + every row's
content hash), and 1,000 checkpoints signed and verified.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from app.ledgers import LedgerStore
from app.ledgers.audit import StoredEntry, verify_chain
from app.ledgers.checkpoints import SigningKey, verify_signature
from app.ledgers.orm import AuditRow


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--db-url")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    url = args.db_url or f"sqlite:///{tmp}/bench.db"
    with LedgerStore(url) as store:
        t0 = time.perf_counter()
        for i in range(args.rows):
            store.add_certificate(
                "p",
                {
                    "id": f"C{i}",
                    "kind": "gec",
                    "mwh": 1 + i % 100,
                    "valid_from": "2025-01-01T00:00:00Z",
                    "valid_to": "2025-02-01T00:00:00Z",
                },
            )
            store.add_offset("p", {"id": f"O{i}", "kind": "ccer", "tco2": 1, "date": "2025-01-01"})
        write_s = time.perf_counter() - t0
        n = store.audit_head()[0]
        print(f"{n} audit entries, {2 * args.rows} ledger rows ({url.split(':')[0]})")
        print(f"  writes:            {write_s / n * 1e3:7.2f} ms per audited change")

        t0 = time.perf_counter()
        with store._read() as session:
            entries = [
                StoredEntry(
                    r.seq, r.ts, r.actor, r.action, r.object, r.details, r.prev_hash, r.hash
                )
                for r in session.scalars(select(AuditRow).order_by(AuditRow.seq))
            ]
        assert verify_chain(entries) == []
        chain_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert store.verify_audit() == []
        full_s = time.perf_counter() - t0
        print(f"  chain only (base): {chain_s:7.3f} s")
        print(f"  chain + rows:      {full_s:7.3f} s  ({full_s / chain_s:.1f}x the chain alone)")

    key = SigningKey(Ed25519PrivateKey.generate())
    t0 = time.perf_counter()
    cps = [key.sign(i, f"{i:064x}", datetime.now(UTC)) for i in range(1000)]
    sign_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert all(verify_signature(c, key.public) for c in cps)
    check_s = time.perf_counter() - t0
    print(f"  checkpoints:       sign {sign_s * 1e3:.0f} µs, verify {check_s * 1e3:.0f} µs each")


if __name__ == "__main__":
    main()
