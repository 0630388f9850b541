"""Signed checkpoints of the audit chain head (Ed25519), kept in a file outside the database.

A checkpoint is `{seq, hash, time, key_id, signature}`: the chain head at `time`, signed with
a private key that lives in a file (default `<LINGTAN_DATA_DIR>/audit-signing.key`, 0600), not
in the database. `lingtan audit verify` checks every checkpoint's signature against that key
(or a given public key) and that each signed (seq, hash) is still in the chain, so rewriting
the chain from any seq at or before the latest checkpoint is detected (docs/security.md).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.ledgers.audit import canonical_json
from app.ledgers.schemas import AuditProblem

log = logging.getLogger(__name__)

KEY_FILENAME = "audit-signing.key"
CHECKPOINT_FILENAME = "audit-checkpoints.jsonl"
#: Domain separation: a checkpoint signature can never be mistaken for another signed thing.
_CONTEXT = b"lingtan audit checkpoint v1\n"
_TAIL_BLOCK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain head (seq, hash) at `time`, signed by the key `key_id`."""

    seq: int
    hash: str
    time: str
    key_id: str
    signature: str

    def signed_bytes(self) -> bytes:
        return signed_message(self.seq, self.hash, self.time, self.key_id)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> Checkpoint:
        """Parse one checkpoint line's object; ValueError when malformed."""
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        seq, digest, time, key_id, sig = (
            doc.get(k) for k in ("seq", "hash", "time", "key_id", "signature")
        )
        if not (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0):
            raise ValueError("seq must be a non-negative integer")
        for name, value in (("hash", digest), ("time", time), ("key_id", key_id), ("sig", sig)):
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
        return cls(seq, str(digest), str(time), str(key_id), str(sig))


def signed_message(seq: int, digest: str, time: str, key_id: str) -> bytes:
    """What is signed: a fixed context line, then canonical JSON of the four fields."""
    body = canonical_json({"seq": seq, "hash": digest, "time": time, "key_id": key_id})
    return _CONTEXT + body.encode("utf-8")


def key_id_of(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of sha256 of the raw 32-byte public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def verify_signature(cp: Checkpoint, public: Ed25519PublicKey) -> bool:
    """True when `cp` was signed by `public` (and its key id names that key)."""
    if cp.key_id != key_id_of(public):
        return False
    try:
        public.verify(base64.b64decode(cp.signature, validate=True), cp.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True


class SigningKey:
    """The Ed25519 private key that signs checkpoints."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id_of(self.public)

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key in `path`, created (0600, PKCS#8 PEM) when absent."""
        try:
            return cls.load(path)
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # written whole under a private name, then linked into place: `link` fails if the
        # key exists, so of processes racing to create it one wins, and the others never see
        # a half-written file (they load the winner's)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, path)
        except FileExistsError:  # another process created it meanwhile: use that one
            return cls.load(path)
        finally:
            tmp.unlink(missing_ok=True)
        log.info(
            "audit signing key created at %s (key id %s)", path, key_id_of(private.public_key())
        )
        return cls(private)

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        data = path.read_bytes()
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "audit signing key %s is readable by others (mode %o): chmod 600", path, mode
            )
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(private)

    def sign(self, seq: int, digest: str, now: datetime) -> Checkpoint:
        time = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        sig = self._private.sign(signed_message(seq, digest, time, self.key_id))
        return Checkpoint(seq, digest, time, self.key_id, base64.b64encode(sig).decode("ascii"))


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file holding either the public or the private key."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        return SigningKey.load(path).public
    public = serialization.load_pem_public_key(data)
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return public


@dataclass(frozen=True, slots=True)
class CheckpointFile:
    """The append-only JSON-lines file of checkpoints."""

    path: Path

    def append(self, cp: Checkpoint) -> None:
        """One line, appended under an exclusive lock and fsynced (API and CLI may both write)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(cp.to_json(), sort_keys=True, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> tuple[list[Checkpoint], list[int]]:
        """(checkpoints in file order, line numbers that are not a checkpoint); ([], [])
        when the file does not exist."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return [], []
        good: list[Checkpoint] = []
        bad: list[int] = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                good.append(Checkpoint.from_json(json.loads(line)))
            except ValueError:
                bad.append(n)
        return good, bad

    def tail(self, n: int) -> list[Checkpoint]:
        """The last `n` readable checkpoints, oldest first, read from the end of the file
        (it grows by a line a minute while the log changes: never read it whole for this)."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return []
        with fh:
            pos = fh.seek(0, os.SEEK_END)
            buf = b""
            while True:
                step = min(_TAIL_BLOCK, pos)
                pos -= step
                fh.seek(pos)
                buf = fh.read(step) + buf
                lines = buf.split(b"\n")
                # the first piece is a partial line unless the start of the file was reached
                complete = lines if pos == 0 else lines[1:]
                parsed = [cp for cp in map(self._parse_line, complete) if cp is not None]
                if len(parsed) >= n or pos == 0:
                    return parsed[-n:]

    @staticmethod
    def _parse_line(line: bytes) -> Checkpoint | None:
        if not line.strip():
            return None
        try:
            return Checkpoint.from_json(json.loads(line))
        except ValueError:
            return None

    def latest(self) -> Checkpoint | None:
        last = self.tail(1)
        return last[-1] if last else None


def check_checkpoints(
    checkpoints: Iterable[Checkpoint], public: Ed25519PublicKey, bad_lines: Iterable[int] = ()
) -> tuple[list[tuple[int, str]], list[AuditProblem]]:
    """(anchors: the (seq, hash) of every validly signed checkpoint, problems: one per
    checkpoint line that is unreadable or not signed by `public`)."""
    anchors: list[tuple[int, str]] = []
    problems = [
        AuditProblem(
            seq=0, kind="checkpoint_invalid", message=f"checkpoint line {n} is not a checkpoint"
        )
        for n in bad_lines
    ]
    for cp in checkpoints:
        if verify_signature(cp, public):
            anchors.append((cp.seq, cp.hash))
        else:
            problems.append(
                AuditProblem(
                    seq=cp.seq,
                    kind="checkpoint_invalid",
                    message=f"checkpoint of seq {cp.seq} ({cp.time}) is not signed by the audit "
                    f"key {key_id_of(public)} (key id {cp.key_id}): forged or edited",
                )
            )
    return anchors, problems


class Checkpointer:
    """Writes a signed checkpoint of the store's head to the file (key created on first use)."""

    def __init__(
        self,
        head: Callable[[], tuple[int, str]],
        key_path: Path,
        file_path: Path,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._head = head
        self.key_path = key_path
        self.file = CheckpointFile(file_path)
        self._clock = clock
        self._key: SigningKey | None = None
        self._last: tuple[int, str] | None = None  # the head last seen in the file

    @property
    def key(self) -> SigningKey:
        if self._key is None:
            self._key = SigningKey.load_or_create(self.key_path)
        return self._key

    def checkpoint(self, *, force: bool = False) -> Checkpoint | None:
        """Sign and append the current head; unless `force`, only when it moved since the
        last checkpoint in the file (None then, and for an empty chain)."""
        seq, digest = self._head()
        if seq == 0:
            return None
        if not force:
            if self._last is None:
                last = self.file.latest()
                self._last = None if last is None else (last.seq, last.hash)
            if self._last == (seq, digest):
                return None
        cp = self.key.sign(seq, digest, self._clock())
        self.file.append(cp)
        self._last = (seq, digest)
        return cp

    def public_doc(self) -> dict[str, str]:
        return {"key_id": self.key.key_id, "public_key": public_pem(self.key.public)}

    def history(self, limit: int) -> list[Checkpoint]:
        return self.file.tail(limit)
