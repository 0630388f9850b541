"""API-key secrets: generation and hashing.

Keys are 32 random bytes (256 bits), so a fast sha256 is enough: a slow KDF such as scrypt
protects guessable passwords, and nothing guesses 2**256. sha256 keeps per-request
verification to one hash and one indexed lookup. The hash is of the whole plaintext, so the
same scheme covers operator-chosen bootstrap keys (those must be long: see MIN_BOOTSTRAP_LEN).
"""

from __future__ import annotations

import hashlib
import secrets

#: Plaintext keys look like `lt_<key id>_<secret>`; the id names the key in lists and the
#: audit log, so a leaked key can be identified and revoked without storing its secret.
KEY_PREFIX = "lt_"
BOOTSTRAP_KEY_ID = "bootstrap"
MIN_BOOTSTRAP_LEN = 16


def new_key_id() -> str:
    return "k" + secrets.token_hex(6)


def new_plaintext_key(key_id: str) -> str:
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()
