"""Mosquitto 2.0 password file entries (`$7$` PBKDF2-SHA512, as `mosquitto_passwd` writes them)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

from collectors.gateways.files import atomic_write
from collectors.gateways.names import check_username

# mosquitto_passwd uses 101 iterations. The broker is single-threaded and re-hashes on every
# CONNECT, so a reconnect storm of many gateways costs iterations x gateways of broker CPU;
# 1000 (~1 ms) is 10x the default while keeping a 1000-gateway storm around a second.
# Generated passwords carry 192 random bits, where the iteration count does not matter.
DEFAULT_ITERATIONS = 1000
SALT_BYTES = 12  # what mosquitto_passwd uses
MIN_PASSWORD_CHARS = 12
PASSWD_MODE = 0o640


def generate_password() -> str:
    """192 random bits, URL-safe (usable unescaped in `mqtt://user:pass@host`)."""
    return secrets.token_urlsafe(24)


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"password too short: use at least {MIN_PASSWORD_CHARS} characters")
    if any(ch in password for ch in "\r\n\0"):
        raise ValueError("password must not contain newlines or NUL")
    return password


def hash_password(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """The `$7$iterations$salt$hash` field Mosquitto 2.0 verifies (base64 salt and hash)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches a `$7$` (PBKDF2-SHA512) or `$6$` (salted SHA512) entry."""
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            salt, want = base64.b64decode(parts[3]), base64.b64decode(parts[4])
            got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]))
        elif len(parts) == 4 and parts[1] == "6":
            salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            got = hashlib.sha512(password.encode("utf-8") + salt).digest()
        else:
            return False
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def read_entries(path: Path) -> dict[str, str]:
    """username -> hash field of every entry (comments and blank lines skipped)."""
    entries: dict[str, str] = {}
    for line in _lines(path):
        user, sep, field = line.partition(":")
        if sep and not line.lstrip().startswith("#"):
            entries[user] = field
    return entries


def set_user(
    path: Path, username: str, password: str, *, iterations: int = DEFAULT_ITERATIONS
) -> None:
    """Add or replace `username`'s entry; every other line is kept as it was."""
    check_username(username)
    entry = f"{username}:{hash_password(check_password(password), iterations=iterations)}"
    kept = [line for line in _lines(path) if line.partition(":")[0] != username]
    atomic_write(path, "\n".join([*kept, entry]) + "\n", PASSWD_MODE)


def remove_user(path: Path, username: str) -> bool:
    """Drop `username`'s entry; False when it had none (the file is then left untouched)."""
    lines = _lines(path)
    kept = [line for line in lines if line.partition(":")[0] != username]
    if len(kept) == len(lines):
        return False
    atomic_write(path, "".join(f"{line}\n" for line in kept), PASSWD_MODE)
    return True


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def write_empty(path: Path) -> None:
    """An empty password file, so a broker configured with `password_file` can start."""
    atomic_write(path, "", PASSWD_MODE)
