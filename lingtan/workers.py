"""`lingtan collect --workers N`: N collector processes on one MQTT shared subscription."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from app.config import Settings

log = logging.getLogger("lingtan.workers")

#: how long stopping workers get to flush before they are killed (docker's default is 10 s,
#: systemd's 90 s: a flush normally takes well under a second)
STOP_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """What worker `index` (1..N) is told on top of the parent's own arguments."""

    index: int
    client_id: str
    share_group: str
    metrics_port: int

    def argv(self) -> list[str]:
        return [
            "--workers", "1",
            "--worker-index", str(self.index),
            "--client-id", self.client_id,
            "--share-group", self.share_group,
            "--metrics-port", str(self.metrics_port),
        ]  # fmt: skip


def plan_workers(settings: Settings) -> list[WorkerPlan]:
    """Distinct client ids `<id>-1`…, one share group (the configured one, else the client
    id), metrics on consecutive ports from `metrics_port` (0 stays off)."""
    n = settings.collect_workers
    group = settings.share_group or settings.client_id
    base_id = settings.client_id[: 64 - len(f"-{n}")]  # client ids are at most 64 characters
    port = settings.metrics_port
    if port and port + n - 1 > 65535:
        raise ValueError(f"metrics ports {port}..{port + n - 1} do not fit below 65536")
    return [
        WorkerPlan(k, f"{base_id}-{k}", group, port + k - 1 if port else 0) for k in range(1, n + 1)
    ]


def orphaned_spools(data_dir: Path, workers: int) -> list[Path]:
    """Spool files of workers beyond the first `workers`: nobody replays them."""
    found = []
    for path in sorted(data_dir.glob("spool-*.sqlite")):
        number = path.stem.removeprefix("spool-")
        if number.isdigit() and int(number) > workers:
            found.append(path)
    return found


def warn_orphaned_spools(settings: Settings) -> None:
    for path in orphaned_spools(settings.data_dir, settings.collect_workers):
        log.warning(
            "%s belongs to a worker that is not started (%d worker(s)): a backlog in it is"
            " not replayed until `lingtan collect --workers` is run with that worker again",
            path,
            settings.collect_workers,
        )


def run_workers(settings: Settings, argv: Sequence[str]) -> int:
    """Start the workers (`lingtan <argv>` plus each plan's arguments), forward SIGINT and
    SIGTERM to them, and return once they all stopped: 0 if they were asked to stop and did
    so cleanly, 1 if one of them died on its own (the others are then stopped too, and the
    supervisor, systemd or compose, restarts the whole unit)."""
    plans = plan_workers(settings)
    procs: list[subprocess.Popen[bytes]] = []
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for plan in plans:
            cmd = [sys.executable, "-m", "lingtan", *argv, *plan.argv()]
            procs.append(subprocess.Popen(cmd))
            if stopping:  # a signal that came while the workers were being started
                procs[-1].send_signal(stopping[0])
            log.info(
                "worker %d: pid %d, client id %s, share group %s%s",
                plan.index,
                procs[-1].pid,
                plan.client_id,
                plan.share_group,
                f", metrics on port {plan.metrics_port}" if plan.metrics_port else "",
            )
        return _supervise(procs, stopping)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


#: exit codes of a worker that was asked to stop: clean, or a signal that came before its
#: own handlers were installed
_STOPPED = {0, 130, -signal.SIGINT, -signal.SIGTERM}


def _supervise(procs: list[subprocess.Popen[bytes]], stopping: list[int]) -> int:
    while True:
        if stopping:
            _wait_all(procs)
            return 0 if all(p.returncode in _STOPPED for p in procs) else 1
        exited = [(k, p.returncode) for k, p in enumerate(procs, 1) if p.poll() is not None]
        if exited:
            # a worker left without being asked (crash, or an exit nobody asked for): its
            # share of the load would silently go unserved, so stop the whole unit
            for k, code in exited:
                log.error("worker %d exited unexpectedly (code %s): stopping the others", k, code)
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            _wait_all(procs)
            return 1
        time.sleep(0.2)


def _wait_all(procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker pid %d did not stop within %.0f s: killing it", p.pid, STOP_GRACE_S)
            p.kill()
            p.wait()
