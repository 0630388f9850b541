"""`lingtan` commands as real child processes for tests: start, wait until serving, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # a file, not a pipe: a chatty child must never block
        return subprocess.Popen(
            [sys.executable, "-m", "lingtan", command],
            env={**os.environ, **env},
            cwd=log.parent,  # no stray .env / lingtan.toml from the repo
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def serving(api: httpx.AsyncClient) -> bool:
    try:
        return (await api.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False
