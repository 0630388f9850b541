"""Add, rotate and remove broker users: password file, ACL file and state kept in step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from collectors.gateways import passwd
from collectors.gateways.acl import write_acl
from collectors.gateways.files import locked
from collectors.gateways.names import AuthConfigError, check_park, check_username
from collectors.gateways.state import BrokerUser, load_state, save_state

PASSWD_NAME = "passwd"
ACL_NAME = "acl"
STATE_NAME = "gateways.json"
DEFAULT_COLLECTOR = "lingtan-collector"
RELOAD_HINT = (
    "Reload the broker so it re-reads the password and ACL files (connections whose user was\n"
    "removed or re-keyed are dropped):\n"
    "  docker compose kill -s HUP mosquitto      # in the docker-compose deployment\n"
    "  kill -HUP $(pidof mosquitto)              # broker running on this host"
)


@dataclass(frozen=True, slots=True)
class Issued:
    """A user whose password was just set; the only time the plain password is available."""

    user: BrokerUser
    password: str
    generated: bool


class BrokerAuth:
    """The broker auth files in one directory (the one mounted at /mosquitto/config)."""

    def __init__(self, config_dir: Path, *, iterations: int = passwd.DEFAULT_ITERATIONS) -> None:
        self.config_dir = config_dir
        self.passwd_path = config_dir / PASSWD_NAME
        self.acl_path = config_dir / ACL_NAME
        self.state_path = config_dir / STATE_NAME
        self.iterations = iterations

    def users(self) -> list[BrokerUser]:
        return load_state(self.state_path)

    def passwd_usernames(self) -> set[str]:
        return set(passwd.read_entries(self.passwd_path))

    def add_gateway(
        self,
        park: str,
        username: str | None = None,
        password: str | None = None,
        *,
        rotate: bool = False,
    ) -> Issued:
        """Create (or with `rotate`, re-key) a gateway that may publish under its park only."""
        check_park(park)
        name = check_username(username or f"gw-{park}")
        return self._issue(BrokerUser(name, "gateway", park, _now()), password, rotate)

    def add_collector(
        self,
        username: str = DEFAULT_COLLECTOR,
        password: str | None = None,
        *,
        rotate: bool = False,
    ) -> Issued:
        """Create (or re-key) a collector user: read telemetry, publish nothing."""
        return self._issue(
            BrokerUser(check_username(username), "collector", None, _now()), password, rotate
        )

    def remove(self, username: str) -> BrokerUser:
        """Revoke a managed user: its password entry and ACL rules go."""
        check_username(username)
        with locked(self.config_dir):
            users = self.users()
            found = [u for u in users if u.username == username]
            if not found:
                raise AuthConfigError(f"no managed user {username!r} (see `lingtan gateways list`)")
            rest = [u for u in users if u.username != username]
            # ACL first: a user without rules can do nothing even if its password survives
            write_acl(self.acl_path, rest)
            passwd.remove_user(self.passwd_path, username)
            save_state(self.state_path, rest)
            return found[0]

    def sync(self) -> None:
        """Re-render the ACL file from the state (after an upgrade or a hand edit)."""
        with locked(self.config_dir):
            write_acl(self.acl_path, self.users())
            if not self.passwd_path.exists():
                passwd.write_empty(self.passwd_path)

    def _issue(self, user: BrokerUser, password: str | None, rotate: bool) -> Issued:
        generated = password is None
        secret = passwd.generate_password() if password is None else passwd.check_password(password)
        with locked(self.config_dir):
            users = self.users()
            old = next((u for u in users if u.username == user.username), None)
            if old is not None:
                if not rotate:
                    raise AuthConfigError(
                        f"user {user.username!r} exists ({_describe(old)}); pass --rotate to"
                        " give it a new password, or remove it first"
                    )
                if (old.role, old.park) != (user.role, user.park):
                    raise AuthConfigError(
                        f"user {user.username!r} is the {_describe(old)}; remove it before"
                        f" reusing the name for the {_describe(user)}"
                    )
                user = old
            elif user.username in self.passwd_usernames():
                raise AuthConfigError(
                    f"{self.passwd_path} already has an unmanaged user {user.username!r};"
                    " choose another name"
                )
            else:
                users.append(user)
            # password before ACL: a new user with a password but no rules can do nothing
            passwd.set_user(self.passwd_path, user.username, secret, iterations=self.iterations)
            write_acl(self.acl_path, users)
            save_state(self.state_path, users)
        return Issued(user, secret, generated)


def _describe(user: BrokerUser) -> str:
    return f"gateway of park {user.park}" if user.role == "gateway" else "collector"


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
