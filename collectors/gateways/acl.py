"""Mosquitto ACL rules per managed user, merged into the ACL file beside hand-written rules."""

from __future__ import annotations

from pathlib import Path

from collectors.gateways.files import atomic_write
from collectors.gateways.names import AuthConfigError
from collectors.gateways.state import BrokerUser

#: What the collector may read: all of `lingtan/`, so topics beside the telemetry filter reach
#: it and are dead-lettered as `bad_topic` instead of vanishing (collectors/topics.py).
COLLECTOR_READ = "lingtan/#"
BEGIN = "# BEGIN lingtan-managed (written by `lingtan gateways`; edits inside are overwritten)"
END = "# END lingtan-managed"
ACL_MODE = 0o644


def gateway_prefix(park: str) -> str:
    return f"lingtan/v1/{park}/#"


def user_rules(user: BrokerUser) -> list[str]:
    """The topic rules of one user; a user with no rule may do nothing (Mosquitto denies)."""
    if user.role == "gateway":
        assert user.park is not None  # enforced by BrokerUser
        return [f"topic write {gateway_prefix(user.park)}"]
    # Mosquitto 2.0's acl_file plugin grants every SUBSCRIBE and checks `read` on each
    # delivered message's real topic, so this one rule covers plain and `$share/<group>/`
    # subscriptions alike. The `$share` line only matters to brokers that check the full
    # shared filter at SUBSCRIBE time; it can never match a published topic.
    return [f"topic read {COLLECTOR_READ}", f"topic read $share/+/{COLLECTOR_READ}"]


def render_block(users: list[BrokerUser]) -> str:
    """The managed section: explicit `user` blocks, one per user, nothing else."""
    lines = [BEGIN]
    for user in users:
        what = f"gateway of park {user.park}" if user.role == "gateway" else "collector"
        lines += ["", f"# {what}", f"user {user.username}", *user_rules(user)]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def merge(existing: str, block: str) -> str:
    """Replace the managed section of `existing`, keeping every other line.

    The section goes last: in an ACL file, `topic` lines belong to the `user` line above
    them, so hand-written rules after our block would attach to our last user.
    """
    kept: list[str] = []
    inside = False
    for line in existing.splitlines():
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif not inside:
            kept.append(line)
    if inside:
        raise AuthConfigError(f"the ACL file has {BEGIN!r} without {END!r}; fix it by hand")
    while kept and not kept[-1].strip():
        kept.pop()
    head = "\n".join(kept) + "\n\n" if kept else ""
    return head + block


def write_acl(path: Path, users: list[BrokerUser]) -> None:
    try:
        existing = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = ""
    atomic_write(path, merge(existing, render_block(users)), ACL_MODE)
