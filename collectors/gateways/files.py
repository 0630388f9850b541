"""Crash-safe rewrites of the broker's auth files and a lock serialising concurrent edits."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def atomic_write(path: Path, text: str, new_file_mode: int) -> None:
    """Replace `path` with `text` so a reader (the broker on SIGHUP) sees old or new, never half.

    An existing file keeps its mode and, where we may, its owner: the broker in a container
    often runs as its own uid and must still be able to read the file after the rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, (st.st_mode & 0o7777) if st else new_file_mode)
        if st is not None and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            try:
                os.chown(tmp_name, st.st_uid, st.st_gid)
            except PermissionError:
                # only root may give a file away; the broker may now be unable to read it
                log.warning(
                    "%s was owned by uid %d gid %d and is now ours (uid %d gid %d): check the"
                    " broker can still read it, or run this as root",
                    path,
                    st.st_uid,
                    st.st_gid,
                    os.getuid(),
                    os.getgid(),
                )
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory`'s auth files (two admins adding gateways at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".gateways.lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
