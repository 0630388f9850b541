"""`lingtan gateways`: broker users and per-park ACLs (wired into `lingtan.cli` by `register`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from collectors.gateways.acl import COLLECTOR_READ, gateway_prefix
from collectors.gateways.names import AuthConfigError
from collectors.gateways.passwd import MIN_PASSWORD_CHARS
from collectors.gateways.workflow import DEFAULT_COLLECTOR, RELOAD_HINT, BrokerAuth, Issued

DIR_ENV = "LINGTAN_MOSQUITTO_DIR"
FILES_HELP = (
    "Files in the directory (default ./mosquitto, or $LINGTAN_MOSQUITTO_DIR), the one\n"
    "docker-compose mounts at /mosquitto/config:\n"
    "  passwd         Mosquitto password file (PBKDF2-SHA512, unmanaged users are kept)\n"
    "  acl            Mosquitto ACL file (only the lingtan-managed section is rewritten)\n"
    "  gateways.json  the managed users, from which the ACL section is rendered\n"
    "Nothing takes effect until the broker re-reads them on SIGHUP (printed after each change)."
)


def register(subparsers: Any) -> None:
    """Add `gateways` and its subcommands to the `lingtan` subparsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    gw = subparsers.add_parser(
        "gateways",
        help="MQTT broker users: per-park gateway credentials and the collector's user",
        description=(
            "Manage the Mosquitto users and ACLs: each gateway may publish only under\n"
            "lingtan/v1/<its park>/#, the collector may only read lingtan/#."
        ),
        epilog=FILES_HELP,
        formatter_class=fmt,
    )
    gw.set_defaults(func=_run_help(gw))
    sub = gw.add_subparsers(dest="gateways_command", metavar="SUBCOMMAND")
    _add_gateway(sub)
    _add_collector(sub)
    _add_maintenance(sub)


def _add_gateway(sub: Any) -> None:
    """`gateways add`: a park's gateway user."""
    fmt = argparse.RawDescriptionHelpFormatter
    add = sub.add_parser(
        "add",
        help="create a gateway user for one park and print its password once",
        description=(
            "Create a broker user for a park's gateway. It may publish only under\n"
            "lingtan/v1/<PARK>/# and may read nothing. A strong random password is generated\n"
            "and printed once unless --password-stdin is given; only its hash is stored."
        ),
        epilog=(
            "examples:\n"
            "  lingtan gateways add shenfu-demo                       # user gw-shenfu-demo\n"
            "  lingtan gateways add shenfu-demo --username shenfu-gw2 # a second gateway\n"
            "  lingtan gateways add shenfu-demo --rotate              # new password\n\n"
            + FILES_HELP
        ),
        formatter_class=fmt,
    )
    add.add_argument("park", help="park id from the registry, e.g. shenfu-demo")
    add.add_argument("--username", help="broker username (default gw-<park>)")
    _secret_opts(add)
    add.add_argument(
        "--parks",
        dest="registry_path",
        type=Path,
        help="park registry YAML to check PARK against (default $LINGTAN_PARKS, if set)",
    )
    add.add_argument(
        "--force", action="store_true", help="accept a park that is not in the registry"
    )
    _dir_opt(add)
    add.set_defaults(func=run)


def _add_collector(sub: Any) -> None:
    """`gateways collector`: the collector's read-only user."""
    fmt = argparse.RawDescriptionHelpFormatter
    coll = sub.add_parser(
        "collector",
        help="create the collector's user (read lingtan/#, publish nothing)",
        description=(
            f"Create the broker user `lingtan collect` connects as. It may read\n"
            f"{COLLECTOR_READ} (plain or $share/<group>/ shared subscriptions) and may\n"
            "not publish. Prints the LINGTAN_MQTT_URL to configure, password included, once."
        ),
        epilog=(
            "examples:\n"
            "  lingtan gateways collector\n"
            "  lingtan gateways collector --rotate --broker mosquitto:1883\n\n" + FILES_HELP
        ),
        formatter_class=fmt,
    )
    coll.add_argument("--username", default=DEFAULT_COLLECTOR, help=f"default {DEFAULT_COLLECTOR}")
    coll.add_argument(
        "--broker",
        default="127.0.0.1:1883",
        help="host:port the collector reaches the broker at, for the printed URL",
    )
    _secret_opts(coll)
    _dir_opt(coll)
    coll.set_defaults(func=run)


def _add_maintenance(sub: Any) -> None:
    """`gateways remove`, `list` and `sync`."""
    fmt = argparse.RawDescriptionHelpFormatter
    rm = sub.add_parser(
        "remove",
        help="revoke a gateway (or collector) user",
        description=(
            "Delete a managed user's password entry and ACL rules. After the broker's SIGHUP\n"
            "its open connections are dropped and it can no longer connect."
        ),
        epilog="example:\n  lingtan gateways remove gw-shenfu-demo\n\n" + FILES_HELP,
        formatter_class=fmt,
    )
    rm.add_argument("username", help="the user to revoke (see `lingtan gateways list`)")
    _dir_opt(rm)
    rm.set_defaults(func=run)

    ls = sub.add_parser(
        "list",
        help="show managed users, their park and what they may do",
        description="List the managed broker users (never their passwords).",
        epilog=FILES_HELP,
        formatter_class=fmt,
    )
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    _dir_opt(ls)
    ls.set_defaults(func=run)

    sync = sub.add_parser(
        "sync",
        help="re-render the ACL file from gateways.json (and create an empty passwd if none)",
        description=(
            "Rewrite the lingtan-managed section of the ACL file from gateways.json, e.g. after\n"
            "restoring a backup or hand-editing the ACL. Also creates an empty password file\n"
            "so a fresh broker can start before any user exists."
        ),
        epilog=FILES_HELP,
        formatter_class=fmt,
    )
    _dir_opt(sync)
    sync.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute a `lingtan gateways` subcommand; 0 on success, 2 on a refused request."""
    auth = BrokerAuth(_config_dir(args))
    try:
        match args.gateways_command:
            case "add":
                _check_registry(args)
                issued = auth.add_gateway(
                    args.park, args.username, _read_secret(args), rotate=args.rotate
                )
                _print_issued(issued, auth)
            case "collector":
                issued = auth.add_collector(args.username, _read_secret(args), rotate=args.rotate)
                _print_issued(issued, auth, broker=args.broker)
            case "remove":
                user = auth.remove(args.username)
                print(f"removed {user.username} ({user.role}{_park_note(user.park)})")
                print(RELOAD_HINT)
            case "list":
                _print_list(auth, as_json=args.json)
            case "sync":
                auth.sync()
                print(f"rendered {auth.acl_path} from {auth.state_path}")
                print(RELOAD_HINT)
            case _:
                return 2
    except (AuthConfigError, ValueError, OSError) as exc:
        print(f"lingtan gateways: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_help(parser: argparse.ArgumentParser) -> Any:
    def show(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def _dir_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        dest="mosquitto_dir",
        type=Path,
        help=f"broker config directory (default ${DIR_ENV} or ./mosquitto)",
    )


def _secret_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password from stdin (>= {MIN_PASSWORD_CHARS} characters) instead of"
        " generating one; never pass passwords as arguments",
    )
    p.add_argument("--rotate", action="store_true", help="the user exists: replace its password")


def _config_dir(args: argparse.Namespace) -> Path:
    given: Path | None = getattr(args, "mosquitto_dir", None)
    return given or Path(os.environ.get(DIR_ENV, "mosquitto"))


def _read_secret(args: argparse.Namespace) -> str | None:
    if not args.password_stdin:
        return None
    return sys.stdin.readline().rstrip("\r\n")


def _check_registry(args: argparse.Namespace) -> None:
    path = args.registry_path or (Path(p) if (p := os.environ.get("LINGTAN_PARKS")) else None)
    if path is None or args.force:
        return
    from app.registry import load_registry  # only when a registry is configured

    registry = load_registry(path)
    if registry.park(args.park) is None:
        known = ", ".join(p.id for p in registry.parks) or "none"
        raise AuthConfigError(
            f"park {args.park!r} is not in {path} (known: {known}); use --force to add anyway"
        )


def _print_issued(issued: Issued, auth: BrokerAuth, broker: str | None = None) -> None:
    user = issued.user
    if user.role == "gateway":
        assert user.park is not None
        print(f"gateway user for park {user.park}")
        print(f"  username:    {user.username}")
        print(
            f"  password:    {issued.password}" if issued.generated else "  password:    (as given)"
        )
        print(
            f"  may publish: {gateway_prefix(user.park)}"
            f"  (e.g. lingtan/v1/{user.park}/<device>/telemetry)"
        )
    else:
        print(f"collector user {user.username}: may read {COLLECTOR_READ}, may not publish")
        pw = issued.password if issued.generated else "<password>"
        print(f"  LINGTAN_MQTT_URL=mqtt://{user.username}:{pw}@{broker}")
    if issued.generated:
        print("The password is shown only this once and is not stored in clear: save it now.")
    print(f"Updated {auth.passwd_path}, {auth.acl_path} and {auth.state_path}.")
    print(RELOAD_HINT)


def _print_list(auth: BrokerAuth, *, as_json: bool) -> None:
    users = auth.users()
    with_pw = auth.passwd_usernames()
    rows = [
        {
            "username": u.username,
            "role": u.role,
            "park": u.park,
            "may": f"publish {gateway_prefix(u.park)}" if u.park else f"read {COLLECTOR_READ}",
            "has_password": u.username in with_pw,
            "created": u.created,
        }
        for u in users
    ]
    if as_json:
        print(json.dumps({"items": rows}, indent=2, ensure_ascii=False))
        return
    if not rows:
        print(f"no managed users in {auth.state_path}; start with `lingtan gateways collector`")
        return
    width = max(len(r["username"]) for r in rows)  # type: ignore[arg-type]
    for r in rows:
        warn = "" if r["has_password"] else "   (no password entry!)"
        print(f"{r['username']:<{width}}  {r['role']:<9}  {r['may']}{warn}")
    unmanaged = sorted(with_pw - {u.username for u in users})
    if unmanaged:
        print(
            f"unmanaged users in {auth.passwd_path} (rules only if you wrote them): "
            + ", ".join(unmanaged)
        )


def _park_note(park: str | None) -> str:
    return f" of park {park}" if park else ""
