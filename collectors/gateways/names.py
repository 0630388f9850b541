"""What may be a broker username or a park id in the auth files."""

from __future__ import annotations

import re

# Same alphabet as park/device ids (docs/gateway-contract.md). It keeps ':' out of the password
# file, spaces and newlines out of the ACL file's `user` lines, and MQTT wildcards out of topic
# rules.
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class AuthConfigError(ValueError):
    """A request the broker auth workflow refuses (bad name, unknown user, wrong role)."""


def check_username(username: str) -> str:
    if not NAME_RE.fullmatch(username):
        raise AuthConfigError(
            f"bad username {username!r}: use 1-64 characters from A-Z a-z 0-9 _ . -"
        )
    return username


def check_park(park: str) -> str:
    if not NAME_RE.fullmatch(park):
        raise AuthConfigError(f"bad park id {park!r}: use 1-64 characters from A-Z a-z 0-9 _ . -")
    return park
