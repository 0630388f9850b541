"""The broker users Lingtan manages (`gateways.json`), from which the ACL is rendered."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from collectors.gateways.files import atomic_write
from collectors.gateways.names import AuthConfigError, check_park, check_username

UserRole = Literal["gateway", "collector"]
STATE_VERSION = 1
STATE_MODE = 0o644


@dataclass(frozen=True, slots=True)
class BrokerUser:
    """One managed broker user: a park's gateway, or a collector."""

    username: str
    role: UserRole
    park: str | None = None  # set for gateways only
    created: str = ""  # RFC 3339 UTC, for the operator's eyes

    def __post_init__(self) -> None:
        check_username(self.username)
        if self.role == "gateway":
            if self.park is None:
                raise AuthConfigError(f"gateway {self.username!r} needs a park")
            check_park(self.park)
        elif self.role == "collector":
            if self.park is not None:
                raise AuthConfigError(f"collector {self.username!r} must not name a park")
        else:
            raise AuthConfigError(f"user {self.username!r}: unknown role {self.role!r}")


def load_state(path: Path) -> list[BrokerUser]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except json.JSONDecodeError as exc:
        raise AuthConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("users"), list):
        raise AuthConfigError(f'{path}: expected {{"version": 1, "users": [...]}}')
    users: list[BrokerUser] = []
    for item in data["users"]:
        if not isinstance(item, dict):
            raise AuthConfigError(f"{path}: every user must be an object, got {item!r}")
        try:
            users.append(
                BrokerUser(
                    username=str(item["username"]),
                    role=item["role"],
                    park=item.get("park"),
                    created=str(item.get("created", "")),
                )
            )
        except KeyError as exc:
            raise AuthConfigError(f"{path}: user {item!r} lacks {exc}") from exc
    names = [u.username for u in users]
    if len(set(names)) != len(names):
        raise AuthConfigError(f"{path}: duplicate usernames")
    return users


def save_state(path: Path, users: list[BrokerUser]) -> None:
    ordered = sorted(users, key=lambda u: (u.role != "collector", u.park or "", u.username))
    payload = {"version": STATE_VERSION, "users": [_dump(u) for u in ordered]}
    atomic_write(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n", STATE_MODE)


def _dump(user: BrokerUser) -> dict[str, str]:
    return {k: v for k, v in asdict(user).items() if v is not None}
