# Long module: `lingtan keys` and `lingtan audit`: one argparse registration, each command short.
"""`lingtan keys …` and `lingtan audit …`: API keys and audit-chain checks from the shell."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from app.config import Settings, load_settings
from app.ledgers.checkpoints import (
    Checkpointer,
    CheckpointFile,
    check_checkpoints,
    load_public_key,
)
from app.ledgers.errors import LedgerError
from app.ledgers.roles import ApiRole
from app.ledgers.schemas import AuditProblem
from app.ledgers.store import LedgerStore

_ANCHOR_RE = re.compile(r"^(\d+):([0-9a-f]{64})$")
_FMT = argparse.RawDescriptionHelpFormatter

STORE_HELP = (
    "The ledger store is LINGTAN_DB_URL (--db-url) when set, else the SQLite file\n"
    "<LINGTAN_DATA_DIR>/lingtan.db (--data-dir, default ./data) — the same one `lingtan api`\n"
    "and `lingtan up` use."
)


class CliError(Exception):
    """A user-facing failure: printed as `lingtan: <message>`, exit status 1 or 2."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--signing-key",
        type=Path,
        help="Ed25519 key file (LINGTAN_AUDIT_SIGNING_KEY; default <data dir>/audit-signing.key)",
    )
    p.add_argument(
        "--checkpoints",
        type=Path,
        help="checkpoint file (LINGTAN_AUDIT_CHECKPOINTS; default "
        "<data dir>/audit-checkpoints.jsonl)",
    )


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data directory (LINGTAN_DATA_DIR)")
    p.add_argument("--db-url", help="SQLAlchemy URL of the ledger store (LINGTAN_DB_URL)")


def _actor() -> str:
    # Changes made from the shell name the operating-system user in the audit log.
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry / no login name (containers)
        return "cli"
    return f"cli:{user}"[:128]


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(data_dir=args.data_dir, db_url=args.db_url)
    except ValidationError as exc:
        raise CliError(f"invalid configuration:\n{exc}", 2) from None


def _open_store(args: argparse.Namespace, *, create: bool) -> LedgerStore:
    """The configured store. Read-only commands refuse to invent an empty SQLite file:
    a typo in the data dir must not report "no keys" or "intact: 0 entries"."""
    settings = _settings(args)
    url = settings.ledger_url
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        path = Path(database)
        if not path.exists():
            if not create:
                raise CliError(
                    f"no ledger database at {path} (set LINGTAN_DATA_DIR / --data-dir or "
                    "LINGTAN_DB_URL / --db-url)",
                    2,
                )
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return LedgerStore(url)
    except Exception as exc:  # driver errors differ per backend; show the cause, not a trace
        raise CliError(f"cannot open the ledger store {make_url(url)!r}: {exc}", 2) from None


def _wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except CliError as exc:
            print(f"lingtan: {exc}", file=sys.stderr)
            return exc.status
        except (LedgerError, ValueError) as exc:
            print(f"lingtan: {exc}", file=sys.stderr)
            return 1

    return run


# -- keys ---------------------------------------------------------------------------------


def parse_parks(text: str) -> list[str] | None:
    """`all` → None (every park); `a,b` → ["a", "b"]."""
    if text.strip().lower() == "all":
        return None
    parks = [p.strip() for p in text.split(",") if p.strip()]
    if not parks:
        raise argparse.ArgumentTypeError("give park ids separated by commas, or all")
    return parks


def _scope_text(parks: list[str] | str) -> str:
    return "all" if parks == "all" else ",".join(parks)


def run_keys_create(args: argparse.Namespace) -> int:
    with _open_store(args, create=True) as store:
        created = store.create_key(args.role, args.label, _actor(), parks=args.parks)
    # The key alone on stdout (KEY=$(lingtan keys create ...)); the rest goes to stderr.
    print(created.key)
    print(
        f"created API key {created.id} (role {created.role.value}, parks "
        f"{_scope_text(created.parks)}"
        + (f", label {created.label!r}" if created.label else "")
        + "). The key above is shown only this once: store it now; only its hash is kept.",
        file=sys.stderr,
    )
    return 0


def _iso(value: Any) -> str:
    return "" if value is None else value.isoformat(timespec="seconds")


def run_keys_list(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        keys = store.list_keys(include_revoked=not args.active)
    if args.json:
        print(json.dumps({"items": [k.model_dump(mode="json") for k in keys]}, indent=2))
        return 0
    if not keys:
        print("no API keys")
        return 0
    rows = [
        (
            k.id,
            k.role.value,
            f"revoked {_iso(k.revoked_at)} by {k.revoked_by}" if k.revoked else "active",
            _iso(k.created_at),
            k.created_by,
            _scope_text(k.parks),
            k.label,
        )
        for k in keys
    ]
    header = ("ID", "ROLE", "STATUS", "CREATED", "BY", "PARKS", "LABEL")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return 0


def run_keys_revoke(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        info = store.revoke_key(args.key_id, _actor())
    print(f"revoked API key {info.id} (role {info.role.value}); it stops working within seconds")
    return 0


# -- audit --------------------------------------------------------------------------------


def parse_anchor(text: str) -> tuple[int, str]:
    """`SEQ:HASH` (as printed by `lingtan audit head`) → (seq, hash)."""
    m = _ANCHOR_RE.fullmatch(text.strip().lower())
    if m is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SEQ:HASH (e.g. 42:<64 hex digits>, from `lingtan audit head`)"
        )
    return int(m.group(1)), m.group(2)


def _checkpoint_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(signing key, checkpoint file): the flags, else the settings (docs/security.md)."""
    settings = _settings(args)
    return (
        args.signing_key or settings.audit_key_path,
        args.checkpoints or settings.audit_checkpoint_path,
    )


def _checkpoint_anchors(
    args: argparse.Namespace,
) -> tuple[list[tuple[int, str]], list[AuditProblem], str]:
    """(anchors from the validly signed checkpoints, checkpoint problems, a summary line)."""
    key_path, cp_path = _checkpoint_paths(args)
    checkpoints, bad_lines = CheckpointFile(cp_path).read()
    if not checkpoints and not bad_lines:
        return [], [], f"no signed checkpoint at {cp_path} yet: the chain is checked only "
    pub_path = args.public_key or key_path
    try:
        public = load_public_key(pub_path)
    except FileNotFoundError:
        raise CliError(
            f"{len(checkpoints)} checkpoint(s) in {cp_path} but no key at {pub_path} to check "
            "their signatures (--public-key or LINGTAN_AUDIT_SIGNING_KEY)",
            2,
        ) from None
    except ValueError as exc:
        raise CliError(f"cannot read the audit key {pub_path}: {exc}", 2) from None
    anchors, problems = check_checkpoints(checkpoints, public, bad_lines)
    latest = checkpoints[-1] if checkpoints else None
    summary = (
        f"latest signed checkpoint seq {latest.seq} ({latest.time}, key {latest.key_id})"
        if latest is not None
        else ""
    )
    return anchors, problems, summary


def run_audit_verify(args: argparse.Namespace) -> int:
    anchors, cp_problems, cp_summary = _checkpoint_anchors(args)
    with _open_store(args, create=False) as store:
        # Head first: entries appended while verifying are checked too, never misreported.
        seq, head_hash = store.audit_head()
        problems = cp_problems + store.verify_audit(anchor=args.anchor, anchors=anchors)
    if not anchors and not cp_problems:
        print(cp_summary + "against itself", file=sys.stderr)
    if not problems:
        anchored = f" (anchor seq {args.anchor[0]} matches)" if args.anchor else ""
        matches = f"; {cp_summary} matches" if anchors else ""
        print(f"audit chain intact: {seq} entries, head {seq} {head_hash}{anchored}{matches}")
        return 0
    for p in problems:
        if p.table is not None:
            print(f"{p.table} row {p.row}: {p.kind}: {p.message}")
        else:
            print(f"seq {p.seq}: {p.kind}: {p.message}")
    print(
        f"audit chain NOT intact: {len(problems)} problem(s); head {seq} {head_hash}",
        file=sys.stderr,
    )
    return 1


def run_audit_checkpoint(args: argparse.Namespace) -> int:
    key_path, cp_path = _checkpoint_paths(args)
    with _open_store(args, create=False) as store:
        cp = Checkpointer(store.audit_head, key_path, cp_path).checkpoint(force=True)
    if cp is None:
        print("the audit log is empty: nothing to sign yet", file=sys.stderr)
        return 0
    print(json.dumps(cp.to_json(), sort_keys=True))
    print(f"signed checkpoint of seq {cp.seq} appended to {cp_path}", file=sys.stderr)
    return 0


def run_audit_adopt(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        adopted = store.adopt_unaudited_rows(_actor(), args.reason)
    for name in adopted:
        print(name)
    print(f"adopted {len(adopted)} unaudited row(s) into the audit log", file=sys.stderr)
    return 0


def run_audit_list(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        parks = None if args.park is None else [args.park]
        entries = store.list_audit(after_seq=args.after_seq, limit=args.limit, parks=parks)
    if args.json:
        print(json.dumps({"items": [e.model_dump(mode="json") for e in entries]}, indent=2))
        return 0
    for e in entries:
        reason = e.details.get("reason") if isinstance(e.details, dict) else None
        cells = [str(e.seq), _iso(e.ts), e.actor, e.action, e.object]
        print("  ".join(cells + ([f"reason: {reason}"] if reason else [])))
    if not entries:
        print("no audit entries" + (f" after seq {args.after_seq}" if args.after_seq else ""))
    return 0


def run_audit_head(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        seq, head_hash = store.audit_head()
    print(f"{seq}:{head_hash}")
    return 0


# -- registration -------------------------------------------------------------------------


def _help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def run(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return run


def register(subparsers: Any) -> None:
    """Add `keys` and `audit` with their subcommands to the `lingtan` subparsers."""
    _register_keys(subparsers)
    _register_audit(subparsers)


def _register_keys(subparsers: Any) -> None:
    roles = [r.value for r in ApiRole]

    keys = subparsers.add_parser(
        "keys",
        help="API keys: create (shown once), list, revoke",
        description=(
            "Manage the API keys of the HTTP API (Authorization: Bearer <key>). Roles:\n"
            "viewer (read) < auditor (+ audit log, raw dead letters) < manager (+ ledgers)\n"
            "< admin. Only a key's sha256 is stored; every change is an audit entry whose\n"
            "actor is cli:<your OS user>."
        ),
        epilog=STORE_HELP,
        formatter_class=_FMT,
    )
    keys.set_defaults(func=_help(keys))
    ksub = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND")

    create = ksub.add_parser(
        "create",
        help="create a key and print it once",
        description=(
            "Create an API key. The key is printed alone on stdout, once; it cannot be shown\n"
            "again (lost key: revoke it and create another)."
        ),
        epilog=(
            "examples:\n"
            "  lingtan keys create --role viewer --label grafana\n"
            "  lingtan keys create --role manager --parks shenfu-demo --label 'park team'\n"
            "  lingtan keys create --role auditor --parks all --label 'provincial evaluator'\n"
            "  KEY=$(lingtan keys create --role manager --label 'energy team')\n"
            '  curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/api/v1/parks\n\n'
            + STORE_HELP
        ),
        formatter_class=_FMT,
    )
    create.add_argument("--role", required=True, choices=roles, help="what the key may do")
    create.add_argument("--label", default="", help="who or what holds it (max 200 chars)")
    create.add_argument(
        "--parks",
        type=parse_parks,
        default=None,
        metavar="all|PARK[,PARK...]",
        help="the parks the key may act on (default all); admin keys are always all",
    )
    _store_args(create)
    create.set_defaults(func=_wrap(run_keys_create))

    lst = ksub.add_parser(
        "list",
        help="list keys (never their secrets)",
        description="List API keys: id, role, active/revoked, when and by whom created, label.",
        epilog="examples:\n  lingtan keys list\n  lingtan keys list --active --json\n\n"
        + STORE_HELP,
        formatter_class=_FMT,
    )
    lst.add_argument("--active", action="store_true", help="leave revoked keys out")
    lst.add_argument("--json", action="store_true", help='JSON {"items": [...]}')
    _store_args(lst)
    lst.set_defaults(func=_wrap(run_keys_list))

    revoke = ksub.add_parser(
        "revoke",
        help="revoke a key by id",
        description=(
            "Revoke an API key (by the id shown in `keys list`, the part after lt_ in the\n"
            "key). The API stops accepting it within its auth cache time (5 s). Revoking the\n"
            "last active admin key is refused."
        ),
        epilog="example:\n  lingtan keys revoke k1a2b3c4d5e6\n\n" + STORE_HELP,
        formatter_class=_FMT,
    )
    revoke.add_argument("key_id", metavar="KEY_ID", help="e.g. k1a2b3c4d5e6")
    _store_args(revoke)
    revoke.set_defaults(func=_wrap(run_keys_revoke))


def _register_audit(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="the tamper-evident audit log: list entries, verify the hash chain, print its head",
        description=(
            "Every change (certificates, offsets, corrections, keys, factor sets, registry) is\n"
            "an entry of a sha256 hash chain recording the content hash of the row it wrote.\n"
            "`verify` re-checks the chain, every ledger row against its entry, and the chain\n"
            "against the signed checkpoints (`checkpoint`, and the API every minute); `head`\n"
            "prints SEQ:HASH of the last entry for `verify --anchor`."
        ),
        epilog=STORE_HELP,
        formatter_class=_FMT,
    )
    audit.set_defaults(func=_help(audit))
    asub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")

    _add_audit_verify(asub)
    checkpoint = asub.add_parser(
        "checkpoint",
        help="sign the current head and append it to the checkpoint file now",
        description=(
            "Sign SEQ:HASH of the last audit entry with the Ed25519 audit key (created 0600 on\n"
            "first use) and append it to the checkpoint file, as the API does every\n"
            "LINGTAN_AUDIT_CHECKPOINT_S seconds when the head moved. Prints the checkpoint."
        ),
        epilog="example:\n  lingtan audit checkpoint\n\n" + STORE_HELP,
        formatter_class=_FMT,
    )
    _checkpoint_args(checkpoint)
    _store_args(checkpoint)
    checkpoint.set_defaults(func=_wrap(run_audit_checkpoint))

    adopt = asub.add_parser(
        "adopt",
        help="record rows that have no audit entry (a database from before row hashes)",
        description=(
            "Append one audit entry (row.adopt, actor cli:<you>) recording the current content\n"
            "hash of every ledger row that has no audit entry at all — once, for a database\n"
            "written before rows were hashed, after checking its figures. Rows that differ\n"
            "from their entry (row_mismatch) are never adopted. Prints TABLE/ID of each."
        ),
        epilog="example:\n  lingtan audit adopt --reason 'baseline after upgrade'\n\n" + STORE_HELP,
        formatter_class=_FMT,
    )
    adopt.add_argument("--reason", required=True, help="why (kept in each entry)")
    _store_args(adopt)
    adopt.set_defaults(func=_wrap(run_audit_adopt))

    lst_audit = asub.add_parser(
        "list",
        help="print the entries (seq, time, actor, action, object, reason)",
        description=(
            "Print audit entries oldest first, one a line: SEQ TIME ACTOR ACTION OBJECT and\n"
            "the reason of a revocation; page with --after-seq (the last seq seen)."
        ),
        epilog=(
            "examples:\n  lingtan audit list --park shenfu-demo\n"
            "  lingtan audit list --after-seq 1200 --limit 50 --json\n\n" + STORE_HELP
        ),
        formatter_class=_FMT,
    )
    lst_audit.add_argument("--after-seq", type=int, default=0, help="entries after this seq")
    lst_audit.add_argument("--limit", type=int, default=1000, help="at most (default 1000)")
    lst_audit.add_argument("--park", help="only entries about this park's ledgers")
    lst_audit.add_argument("--json", action="store_true", help='JSON {"items": [...]}')
    _store_args(lst_audit)
    lst_audit.set_defaults(func=_wrap(run_audit_list))

    head = asub.add_parser(
        "head",
        help="print SEQ:HASH of the last entry (an anchor for verify)",
        description="Print SEQ:HASH of the last audit entry (0:000…0 when the log is empty).",
        epilog="example:\n  lingtan audit head > audit-head-$(date +%F).txt\n\n" + STORE_HELP,
        formatter_class=_FMT,
    )
    _store_args(head)
    head.set_defaults(func=_wrap(run_audit_head))


def _add_audit_verify(asub: Any) -> None:
    verify = asub.add_parser(
        "verify",
        help="re-check the whole chain; exit 1 listing each problem with its seq",
        description=(
            "Recompute every entry's hash and link, every ledger row's content hash against\n"
            "its latest audit entry, and check every signed checkpoint (signature, and its\n"
            "seq/hash still in the chain). Exit 0 and print\n"
            "  audit chain intact: N entries, head SEQ HASH[; latest signed checkpoint ...]\n"
            "or exit 1 with one line per problem: seq N: edited|missing|chain_broken|\n"
            "bad_genesis|head_mismatch|checkpoint_invalid: <what was found>, or\n"
            "TABLE row ID: row_unaudited|row_mismatch|row_deleted: <what was found>."
        ),
        epilog=(
            "examples:\n"
            "  lingtan audit verify\n"
            '  lingtan audit verify --anchor "$(cat audit-head-2026-11.txt)"\n\n' + STORE_HELP
        ),
        formatter_class=_FMT,
    )
    _checkpoint_args(verify)
    verify.add_argument(
        "--public-key",
        type=Path,
        help="PEM public key of the checkpoints (default: derived from the signing key file)",
    )
    verify.add_argument(
        "--anchor",
        type=parse_anchor,
        metavar="SEQ:HASH",
        help="a head recorded earlier (`lingtan audit head`): must still be in the chain",
    )
    _store_args(verify)
    verify.set_defaults(func=_wrap(run_audit_verify))
