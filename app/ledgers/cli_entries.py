"""`lingtan certificates …` and `lingtan offsets …`: list a park's entries, revoke one."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.ledgers.cli import _FMT, STORE_HELP, _actor, _help, _iso, _open_store, _store_args, _wrap
from app.ledgers.schemas import CertificateRecord, OffsetRecord
from app.ledgers.store import LedgerStore

Record = CertificateRecord | OffsetRecord


def parse_reason(text: str) -> str:
    """A revocation reason: required, not blank, at most 500 characters (as over HTTP)."""
    reason = text.strip()
    if not reason:
        raise argparse.ArgumentTypeError("a reason is required (not only spaces)")
    if len(reason) > 500:
        raise argparse.ArgumentTypeError("the reason is longer than 500 characters")
    return reason


def _status(r: Record) -> str:
    if r.revoked_at is None:
        return "active"
    return f"revoked {_iso(r.revoked_at)} by {r.revoked_by}: {r.revoke_reason}"


def _certificate_row(r: Record) -> tuple[str, ...]:
    assert isinstance(r, CertificateRecord)
    return (r.id, r.kind, f"{r.mwh:g}", _iso(r.valid_from), _iso(r.valid_to), _status(r))


def _offset_row(r: Record) -> tuple[str, ...]:
    assert isinstance(r, OffsetRecord)
    return (r.id, r.kind, f"{r.tco2:g}", r.date.isoformat(), _status(r))


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


@dataclass(frozen=True, slots=True)
class _Ledger:
    """What differs between the two ledgers' commands."""

    noun: str
    header: tuple[str, ...]
    row: Callable[[Record], tuple[str, ...]]
    #: (store, park, include_revoked) → records
    lister: Callable[[LedgerStore, str, bool], Sequence[Record]]
    #: (store, id, actor, reason, park) → the revoked record
    revoker: Callable[[LedgerStore, str, str, str, str], Record]
    example_id: str

    def run_list(self, args: argparse.Namespace) -> int:
        with _open_store(args, create=False) as store:
            items = self.lister(store, args.park, args.include_revoked)
        if args.json:
            print(json.dumps({"items": [i.model_dump(mode="json") for i in items]}, indent=2))
        elif not items:
            print(f"no {self.noun}s in park {args.park}")
        else:
            _print_table(self.header, [self.row(i) for i in items])
        return 0

    def run_revoke(self, args: argparse.Namespace) -> int:
        with _open_store(args, create=False) as store:
            rec = self.revoker(store, args.entry_id, _actor(), args.reason, args.park)
            seq, _ = store.audit_head()
        print(json.dumps(rec.model_dump(mode="json"), indent=2))
        print(
            f"revoked {self.noun} {rec.id} of park {rec.park} (audit seq {seq}); balances "
            "and reports no longer apply it",
            file=sys.stderr,
        )
        return 0


CERTIFICATES = _Ledger(
    "certificate",
    ("ID", "KIND", "MWH", "VALID_FROM", "VALID_TO", "STATUS"),
    _certificate_row,
    lambda s, park, rev: s.list_certificates(park, include_revoked=rev),
    lambda s, i, actor, reason, park: s.revoke_certificate(i, actor, reason, park=park),
    "GEC-2025-000123",
)
OFFSETS = _Ledger(
    "offset",
    ("ID", "KIND", "TCO2", "DATE", "STATUS"),
    _offset_row,
    lambda s, park, rev: s.list_offsets(park, include_revoked=rev),
    lambda s, i, actor, reason, park: s.revoke_offset(i, actor, reason, park=park),
    "CCER-2024-0042",
)


def _register_one(subparsers: Any, ledger: _Ledger) -> None:
    noun = ledger.noun
    top = subparsers.add_parser(
        f"{noun}s",
        help=f"the {noun} ledger of a park: list, revoke",
        description=(
            f"A park's {noun}s (added over the API: POST /api/v1/parks/PARK/{noun}s). A\n"
            f"revoked {noun} is kept, with who revoked it, when and why, but no balance or\n"
            "report applies it any more; its id stays taken. Every revocation is an audit\n"
            "entry whose actor is cli:<your OS user>."
        ),
        epilog=STORE_HELP,
        formatter_class=_FMT,
    )
    top.set_defaults(func=_help(top))
    sub = top.add_subparsers(dest=f"{noun}s_command", metavar="SUBCOMMAND")

    lst = sub.add_parser(
        "list",
        help=f"list a park's {noun}s",
        description=f"List a park's {noun}s (active only unless --include-revoked).",
        epilog=(
            f"examples:\n  lingtan {noun}s list --park shenfu-demo\n"
            f"  lingtan {noun}s list --park shenfu-demo --include-revoked --json\n\n" + STORE_HELP
        ),
        formatter_class=_FMT,
    )
    lst.add_argument("--park", required=True, help="park id")
    lst.add_argument("--include-revoked", action="store_true", help="revoked ones too")
    lst.add_argument("--json", action="store_true", help='JSON {"items": [...]}')
    _store_args(lst)
    lst.set_defaults(func=_wrap(ledger.run_list))

    revoke = sub.add_parser(
        "revoke",
        help=f"revoke a {noun} (kept, no longer applied)",
        description=(
            f"Revoke the {noun} ID of park PARK: prints the revoked record as JSON. Exit 1\n"
            f"for an unknown id, another park's id, or a {noun} already revoked."
        ),
        epilog=(
            f"example:\n  lingtan {noun}s revoke {ledger.example_id} --park shenfu-demo "
            "--reason 'issued twice'\n\n" + STORE_HELP
        ),
        formatter_class=_FMT,
    )
    revoke.add_argument("entry_id", metavar="ID", help=f"the {noun}'s id")
    revoke.add_argument("--park", required=True, help="the park it belongs to")
    revoke.add_argument(
        "--reason", required=True, type=parse_reason, help="why (required; kept in the audit log)"
    )
    _store_args(revoke)
    revoke.set_defaults(func=_wrap(ledger.run_revoke))


def register(subparsers: Any) -> None:
    """Add `certificates` and `offsets` with their subcommands to the `lingtan` subparsers."""
    _register_one(subparsers, CERTIFICATES)
    _register_one(subparsers, OFFSETS)
