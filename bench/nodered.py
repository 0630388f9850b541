"""Node-RED comparison: `lingtan collect` against a Node-RED MQTT → InfluxDB flow, from launch.

Issue 14 compares the collector with the flow an integrator would build in Node-RED instead:
`mqtt in` (QoS 1, persistent session) → a function node turning the native JSON into points →
`influxdb batch` (node-red-contrib-influxdb) into InfluxDB 1.x. This bench drains the same
backlog with each and times it **from process launch**, start-up included, since that is
what a restart after an outage costs.

Starts its own Mosquitto (the shipped config) and influxd on free ports (bench/ingest.py's
helpers). Node-RED and node-red-contrib-influxdb (pinned, NODE_RED_PACKAGES) are installed
with npm into a cache directory the first time (`--nodered-dir`; needs `node` ≥ 18.5 and
`npm`). Node-RED gets a fair chance: a settings file with the editor, admin API and HTTP
nodes off, logging at warn, no debug nodes, plain credentials in the flow (influxd runs
without auth, so there is nothing to decrypt), and at most `--max-sockets` (8) concurrent
InfluxDB writes. Unbounded (0, Node's default) it loses readings on a backlog: it acks each
message on arrival and starts a write for each at once, influxd times the flood out (HTTP
500), node-influx then fails every further write with "No host available"; a drain whose
count stops growing for `--stall-s` is reported with the readings it lost.

The flows (`--flows`, both by default):

- `direct`: mqtt in → function → influxdb batch: one InfluxDB write per MQTT message, the
  flow an integrator builds first;
- `joined`: mqtt in → function → join (`--join-count` messages, or 100 ms after the first,
  as the collector's batch window) → function (flatten) → influxdb batch: one write per
  batch, the flow tuned for throughput.

For each message shape (`--per-message`) and each of `--repeat` rounds (which side goes
first alternates by round), each side in turn, into a database of its own:

1. registers its persistent session: the process is launched once, left to connect (until
   Mosquitto logs its client id) and stopped; outside any timing;
2. the backlog is published into that session's queue while the process is down;
3. the process is launched and timed until the last reading is stored in InfluxDB. Node-RED
   has no durable-ack metric, so both sides are timed alike, by asking InfluxDB: every
   reading counted every 50 ms until the first is stored (start-up: no drain to disturb
   yet); then the backlog's last message (its device and times) looked for every
   `--poll-s` (0.1 s; a query of a few ms, where counting every reading took up to 650 ms
   of influxd at 500k readings), every reading counted once it is found (or every 5 s, to
   see progress and stalls). The end is the middle of the last look that missed and the
   one that found it, with everything counted. The collector's own clock (its
   `lingtan_collector_last_durable_timestamp_seconds`, exact) is printed beside it as a
   check on the method;
4. the process is stopped, its session removed, and every reading counted again.

Reported: readings/s from launch (the figure to compare) and from the first reading stored,
launch → connected (Mosquitto's log, read every 50 ms) and launch → first reading stored,
medians with min–max over the rounds, and the collector's rate divided by each flow's. Read
"from the first stored" with care for Node-RED: it takes in and acks messages much faster
than it writes, so its first write lands late and the rest follows in a burst ("inf":
everything was in at the first look). Differences
to keep in mind: Node-RED acks each message before writing it (a crash loses what is in
flight) and writes readings only; the collector validates, computes interval energies (a
second point per reading), and acks once durable.

    .venv/bin/python bench/nodered.py                       # 100k messages, 1 and 10 per message
    .venv/bin/python bench/nodered.py --messages 20000 --repeat 1         # quick check
    .venv/bin/python bench/nodered.py --per-message 10 --flows joined --repeat 5
    .venv/bin/python bench/nodered.py --max-sockets 0 --flows direct      # Node-RED untuned
    .venv/bin/python bench/nodered.py --nodered-dir /opt/node-red --keep-work
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest import (  # it puts the repository on sys.path, for tests.fixtures below
    _alive,
    _publish_only,
    build_messages,
    count_readings,
    drop_session,
    metric,
    parks_yaml,
    start_collector,
    stop_collector,
    wait_connected,
)

from tests.fixtures.influx import InfluxServer, running_influx
from tests.fixtures.mosquitto import MosquittoServer, free_port

NODE_RED_PACKAGES = ("node-red@4.1.8", "node-red-contrib-influxdb@0.7.0")
DEFAULT_NODERED_DIR = Path.home() / ".cache" / "lingtan-bench" / "node-red"
NODERED_CLIENT_ID = "bench-nodered"
COLLECTOR_CLIENT_ID = "bench-collector"
FLOWS = ("direct", "joined")
START_S = 60.0  # longest start-up (launch → connected, or → first reading stored)


def ensure_nodered(directory: Path) -> Path:
    """Node-RED's red.js under `directory`, installed there with npm first if missing."""
    red = directory / "node_modules" / "node-red" / "red.js"
    plugin = directory / "node_modules" / "node-red-contrib-influxdb" / "package.json"
    if shutil.which("node") is None:
        raise SystemExit("node not found: install Node.js ≥ 18.5 (e.g. apt-get install nodejs)")
    if red.exists() and plugin.exists():
        return red
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            f"npm not found, and Node-RED is not installed in {directory}: install npm"
            " (e.g. apt-get install npm), or pass --nodered-dir with"
            f" {' '.join(NODE_RED_PACKAGES)} installed in its node_modules"
        )
    directory.mkdir(parents=True, exist_ok=True)
    print(
        f"installing {', '.join(NODE_RED_PACKAGES)} into {directory} with npm (once)…",
        file=sys.stderr,
    )
    started = time.monotonic()
    subprocess.run(
        [npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund", "--omit=dev",
         *NODE_RED_PACKAGES],
        check=True,
        stdout=sys.stderr,
    )  # fmt: skip
    print(f"installed in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return red


def settings_js(user_dir: Path, max_sockets: int) -> str:
    """Node-RED's settings: the editor, admin API and HTTP nodes off, logging at warn; and, if
    `max_sockets`, at most that many concurrent HTTP requests (the InfluxDB writes) at once."""
    settings = {
        "uiHost": "127.0.0.1",
        "uiPort": free_port(),
        "userDir": str(user_dir),
        "flowFile": "flows.json",
        "flowFilePretty": False,
        "credentialSecret": False,
        "httpAdminRoot": False,
        "httpNodeRoot": False,
        "disableEditor": True,
        "logging": {"console": {"level": "warn", "metrics": False, "audit": False}},
        "diagnostics": {"enabled": False, "ui": False},
        "runtimeState": {"enabled": False, "ui": False},
        "telemetry": {"enabled": False},
        "externalModules": {"autoInstall": False},
        "functionExternalModules": False,
    }
    # node-influx sends through Node's global agent, unbounded by default: on a backlog every
    # message becomes a concurrent write, influxd times them out (500), and node-influx then
    # fails the rest with "No host available" (already acked, so lost)
    limit = f'require("http").globalAgent.maxSockets = {max_sockets};\n' if max_sockets else ""
    return f"{limit}module.exports = {json.dumps(settings, indent=2)};\n"


# msg.payload is the parsed native JSON (docs/gateway-contract.md): one reading or an array.
TO_POINTS_JS = """\
const t = msg.topic.split("/");
const tags = {park: t[2], device: t[3]};
const rows = Array.isArray(msg.payload) ? msg.payload : [msg.payload];
msg.payload = rows.map((r) => ({
    measurement: "reading",
    tags: tags,
    fields: {energy_import_kwh: r.energy_import_kwh, power_kw: r.power_kw},
    timestamp: r.ts,
}));
return msg;
"""


def _node(node_id: str, kind: str, wires: list[str], **props: object) -> dict[str, object]:
    # Node-RED takes a node without a position for a config node
    return {"id": node_id, "type": kind, "z": "tab", "x": 0, "y": 0, "wires": [wires], **props}


def flow_json(broker: MosquittoServer, influx: InfluxServer, flow: str, join_count: int) -> str:
    """The flow: mqtt in → function → [join → flatten →] influxdb batch, and its config nodes."""
    port = influx.url.rsplit(":", 1)[1]
    to_store = "join" if flow == "joined" else "store"
    nodes: list[dict[str, object]] = [
        {"id": "tab", "type": "tab", "label": "lingtan bench"},
        {
            "id": "broker", "type": "mqtt-broker", "broker": "127.0.0.1", "port": str(broker.port),
            "clientid": NODERED_CLIENT_ID, "autoConnect": True, "usetls": False,
            "protocolVersion": "4", "keepalive": "60", "cleansession": False,
            "autoUnsubscribe": False,  # keep the subscription when stopped: the backlog queues
            "birthTopic": "", "closeTopic": "", "willTopic": "",
        },
        {
            "id": "influx", "type": "influxdb", "hostname": "127.0.0.1", "port": port,
            "protocol": "http", "database": influx.database, "name": "", "usetls": False,
            "influxdbVersion": "1.x", "credentials": {"username": "", "password": ""},
        },
        _node("in", "mqtt in", ["points"], topic="lingtan/v1/+/+/telemetry", qos="1",
              datatype="json", broker="broker", nl=False, rap=True, rh=0, inputs=0),
        _node("points", "function", [to_store], name="to points", func=TO_POINTS_JS,
              outputs=1, noerr=0),
        _node("store", "influxdb batch", [], influxdb="influx", precision="s",
              retentionPolicy=""),
    ]  # fmt: skip
    if flow == "joined":
        # the join sends after `join_count` messages or 100 ms after the first of a group
        nodes += [
            _node("join", "join", ["flatten"], mode="custom", build="array", property="payload",
                  propertyType="msg", key="topic", joiner="\\n", joinerType="str",
                  accumulate=False, timeout="0.1", count=str(join_count), reduceRight=False),
            _node("flatten", "function", ["store"], name="flatten",
                  func="msg.payload = msg.payload.flat();\nreturn msg;\n", outputs=1, noerr=0),
        ]  # fmt: skip
    return json.dumps(nodes)


@dataclass(frozen=True)
class Run:
    """One timed drain; times in seconds from process launch, found by polling InfluxDB.

    `connect_s`: when Mosquitto logged the client connecting (polled every 50 ms);
    `first_s`: the first poll that counted a reading (its midpoint), when `first_n` were
    stored; `last_s`: when every reading was (see `watch_drain`), or, if the count stalled
    short of that (`stored` < `readings`: readings lost), when it last grew;
    `own_last_s`: the collector's own clock for its last durable batch (None for Node-RED),
    `spooled`: its batches spooled (durable on disk, written to InfluxDB later: `own_last_s`
    counts them as done);
    `probe_s`, `count_s`: the median look for the last message and the longest full count
    (what a poll costs influxd, roughly).
    """

    connect_s: float
    first_s: float
    first_n: int
    last_s: float
    readings: int
    stored: int
    own_last_s: float | None = None
    probe_s: float = 0.0
    count_s: float = 0.0
    spooled: int = 0

    @property
    def complete(self) -> bool:
        return self.stored == self.readings

    @property
    def from_launch(self) -> float:
        return self.readings / self.last_s

    @property
    def from_first(self) -> float:
        """Infinite if every reading was in at the first look (Node-RED's joined flow takes in
        the whole backlog before its first write lands)."""
        if self.first_n >= self.readings or self.last_s <= self.first_s:
            return math.inf
        return (self.readings - self.first_n) / (self.last_s - self.first_s)


def _query_count(influx: InfluxServer, where: str = "") -> tuple[float, int, float]:
    """(wall time of the query's midpoint, readings counted, seconds the query took).

    Through urllib, not the fixtures' httpx.get: a new httpx client per call builds an SSL
    context, tens of ms of the bench's CPU a poll on a busy 2-core machine, taken from the
    processes being timed."""
    q = f"SELECT count(energy_import_kwh) FROM reading{where}"
    url = f"{influx.url}/query?" + urllib.parse.urlencode({"db": influx.database, "q": q})
    before = time.time()
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = json.load(resp)
    after = time.time()
    series = body["results"][0].get("series", [])
    n = int(series[0]["values"][0][1]) if series else 0
    return (before + after) / 2, n, after - before


def _count(influx: InfluxServer) -> tuple[float, int, float]:
    return _query_count(influx)


@dataclass(frozen=True)
class LastMessage:
    """The backlog's last message, which a cheap query finds in InfluxDB: its device, the span
    of its readings' times and how many it holds (build_messages sends each device's readings
    in time order, so no later reading of that device exists)."""

    device: str
    first_ts_s: int
    last_ts_s: int
    readings: int

    @classmethod
    def of(cls, msgs: list[tuple[str, bytes]]) -> LastMessage:
        topic, payload = msgs[-1]
        body = json.loads(payload)
        rows = body if isinstance(body, list) else [body]
        return cls(topic.split("/")[3], rows[0]["ts"], rows[-1]["ts"], len(rows))

    def stored(self, influx: InfluxServer) -> tuple[float, bool, float]:
        """(wall time of the query's midpoint, whether all its readings are in, seconds)."""
        where = (
            f" WHERE device = '{self.device}'"
            f" AND time >= {self.first_ts_s}s AND time <= {self.last_ts_s}s"
        )
        t, n, took = _query_count(influx, where)
        return t, n == self.readings, took


PROGRESS_S = 5.0  # a full count this often while the last message is awaited (stalls, progress)
RECOUNT_S = 0.5  # full counts this often once the last message is in but not yet everything


def _wait_first(
    influx: InfluxServer,
    launched: float,
    alive: Callable[[], None],
    connected: Callable[[], bool],
) -> tuple[float, float, int]:
    """Start-up: (launch → connected s, launch → first stored s, readings then), polled every
    50 ms (there is no drain to disturb yet, and counting an empty measurement is cheap)."""
    connect: float | None = None
    while True:
        if connect is None and connected():
            connect = time.time()
        t, n, _ = _count(influx)
        if n > 0:
            return (connect or t) - launched, t - launched, n
        alive()
        if t - launched > START_S:
            raise RuntimeError(f"no reading stored {START_S:.0f} s after launch")
        time.sleep(0.05)


def watch_drain(
    influx: InfluxServer,
    last: LastMessage,
    readings: int,
    launched: float,
    opts: Options,
    alive: Callable[[], None],
    connected: Callable[[], bool],
) -> Run:
    """Time a drain from launch: the first reading stored (`_wait_first`), then the last: the
    backlog's last message is looked for every `poll_s`, and once found, everything is
    counted; the end is the middle of the last look that missed and the one that found
    everything. A count stuck for `stall_s` ends the run short (readings lost)."""
    connect_s, first_s, first_n = _wait_first(influx, launched, alive, connected)
    if first_n >= readings:  # all in at the first look (the 50 ms one before found none)
        return Run(connect_s, first_s, first_n, first_s, readings, readings)
    missed = counted = grew = launched + first_s  # last look that missed; last count; growth
    stored, count_s, looks = first_n, 0.0, list[float]()
    hit: float | None = None  # when the last message was first found stored
    while True:
        time.sleep(opts.poll_s if hit is None else RECOUNT_S)
        alive()
        just_hit: float | None = None
        if hit is None:
            t, found, took = last.stored(influx)
            looks.append(took)
            if found:
                hit = just_hit = t
            elif t - counted < PROGRESS_S:
                missed = t
                continue
        t, n, took = _count(influx)
        count_s, counted = max(count_s, took), t
        if n == readings:
            end_s = (missed + (just_hit if just_hit is not None else t)) / 2 - launched
            break
        missed = t
        if n > stored:
            stored, grew = n, t
        elif t - grew > opts.stall_s:
            print(f"  {n:,} of {readings:,} readings stored, stalled", file=sys.stderr)
            last_s = grew - launched
            probe_s = statistics.median(looks or [0.0])
            return Run(connect_s, first_s, first_n, last_s, readings, n, None, probe_s, count_s)
        print(f"  … {n:,} / {readings:,} readings stored", file=sys.stderr, end="\r")
    probe_s = statistics.median(looks or [0.0])
    return Run(connect_s, first_s, first_n, end_s, readings, readings, None, probe_s, count_s)


def _verify(influx: InfluxServer, run: Run, who: str) -> None:
    """Count once more after the process stopped: nothing may differ from the last poll."""
    got = count_readings(influx)
    if got != run.stored:
        raise RuntimeError(f"{who}: {got:,} readings stored, {run.stored:,} counted before")


@dataclass(frozen=True)
class Options:
    """The command line's choices that shape a drain."""

    poll_s: float
    stall_s: float
    join_count: int
    max_sockets: int


@dataclass(frozen=True)
class Bench:
    """What every drain shares: the broker, influxd, the work dir and the options."""

    broker: MosquittoServer
    influx: InfluxServer
    work: Path
    red: Path
    opts: Options
    env: dict[str, str]


def collector_run(bench: Bench, db: InfluxServer, msgs: list[tuple[str, bytes]], name: str) -> Run:
    """`lingtan collect` drains the backlog queued for its persistent session, from launch."""
    env = {
        **bench.env,
        "LINGTAN_INFLUX_DB": db.database,
        "LINGTAN_DATA_DIR": str(bench.work / f"data-{name}"),
    }
    port = int(env["LINGTAN_METRICS_PORT"])
    log = bench.work / f"collector-{name}.log"
    proc = start_collector(env, log)  # registers the persistent session; outside any timing
    try:
        wait_connected([port], proc, log)
    finally:
        stop_collector(proc)
    readings = _readings(msgs)
    asyncio.run(_publish_only(bench.broker.url, msgs))
    before = _connects(bench.broker, COLLECTOR_CLIENT_ID)
    launched = time.time()
    proc = start_collector(env, log)
    try:
        run = watch_drain(
            db,
            LastMessage.of(msgs),
            readings,
            launched,
            bench.opts,
            lambda: _alive(proc, log),
            lambda: _connects(bench.broker, COLLECTOR_CLIENT_ID) > before,
        )
        own = metric(port, "lingtan_collector_last_durable_timestamp_seconds") - launched
        spooled = int(metric(port, "lingtan_collector_spooled_batches_total"))
    finally:
        stop_collector(proc)
    drop_session(bench.broker, COLLECTOR_CLIENT_ID)
    _verify(db, run, "lingtan collect")
    if not run.complete:  # it acks only once durable: a shortfall is a bug, not a result
        raise RuntimeError(f"lingtan collect stored {run.stored:,} of {readings:,} readings")
    return dataclasses.replace(run, own_last_s=own, spooled=spooled)


def _readings(msgs: list[tuple[str, bytes]]) -> int:
    return sum(len(body) if isinstance(body := json.loads(p), list) else 1 for _, p in msgs)


def _connects(broker: MosquittoServer, client_id: str) -> int:
    """How often Mosquitto logged `client_id` connecting (the shipped connection_messages)."""
    return broker.log().count(f" as {client_id} ")


def start_nodered(bench: Bench, user_dir: Path) -> subprocess.Popen[bytes]:
    node = shutil.which("node") or "node"
    with (user_dir / "node-red.log").open("ab") as out:
        return subprocess.Popen(
            [node, str(bench.red), "--settings", str(user_dir / "settings.js"),
             "--userDir", str(user_dir)],
            cwd=user_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def _nodered_alive(proc: subprocess.Popen[bytes], user_dir: Path) -> None:
    if proc.poll() is not None:
        log = (user_dir / "node-red.log").read_text(errors="replace")
        raise RuntimeError(f"Node-RED exited: {log[-2000:]}")


def _log_digest(user_dir: Path) -> str:
    """Node-RED's log, shortened: its first lines and how often each error recurred."""
    lines = (user_dir / "node-red.log").read_text(errors="replace").splitlines()
    errors = Counter(line.split("] ", 1)[-1] for line in lines if "[error]" in line)
    head = "\n".join(lines[:15])
    summary = "\n".join(f"  {n:,}× {text[:300]}" for text, n in errors.most_common(5))
    return f"its log begins:\n{head}\nerrors, most frequent first:\n{summary}"


def stop_nodered(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)  # Node-RED closes its flows and exits
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def nodered_run(
    bench: Bench, db: InfluxServer, msgs: list[tuple[str, bytes]], name: str, flow: str
) -> Run:
    """Node-RED running `flow` drains the backlog queued for its persistent session."""
    user_dir = bench.work / f"nodered-{name}-{flow}"
    user_dir.mkdir()
    (user_dir / "settings.js").write_text(settings_js(user_dir, bench.opts.max_sockets))
    (user_dir / "flows.json").write_text(flow_json(bench.broker, db, flow, bench.opts.join_count))
    before = _connects(bench.broker, NODERED_CLIENT_ID)
    proc = start_nodered(bench, user_dir)  # registers the persistent session; outside timing
    try:
        deadline = time.monotonic() + START_S
        while _connects(bench.broker, NODERED_CLIENT_ID) == before:
            _nodered_alive(proc, user_dir)
            if time.monotonic() > deadline:
                raise RuntimeError(f"Node-RED did not connect to Mosquitto in {START_S:.0f} s")
            time.sleep(0.05)
    finally:
        stop_nodered(proc)
    readings = _readings(msgs)
    asyncio.run(_publish_only(bench.broker.url, msgs))
    before = _connects(bench.broker, NODERED_CLIENT_ID)
    launched = time.time()
    proc = start_nodered(bench, user_dir)
    try:
        run = watch_drain(
            db,
            LastMessage.of(msgs),
            readings,
            launched,
            bench.opts,
            lambda: _nodered_alive(proc, user_dir),
            lambda: _connects(bench.broker, NODERED_CLIENT_ID) > before,
        )
    except RuntimeError as e:
        raise RuntimeError(f"Node-RED ({flow}): {e}; {_log_digest(user_dir)}") from e
    finally:
        stop_nodered(proc)
    drop_session(bench.broker, NODERED_CLIENT_ID)
    _verify(db, run, f"Node-RED ({flow})")
    if not run.complete:
        print(f"  Node-RED ({flow}) lost readings: {_log_digest(user_dir)}", file=sys.stderr)
    return run


COLLECTOR = "lingtan collect"


def one_drain(bench: Bench, side: str, msgs: list[tuple[str, bytes]], name: str) -> Run:
    """One side drains the backlog into a database of its own, dropped afterwards."""
    db = bench.influx.using(f"bench_{name.replace('-', '_')}_{side.split()[-1]}")
    db.create_database()
    try:
        if side == COLLECTOR:
            return collector_run(bench, db, msgs, name)
        return nodered_run(bench, db, msgs, name, side.split()[-1])
    finally:
        db.drop_database()


def _spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def _ms(values: list[float]) -> str:
    return _spread([1000 * v for v in values]) + " ms"


def _row(per: int, side: str, runs: list[Run], ours: list[Run]) -> str:
    """One table row: rates over the rounds where every reading arrived; losses apart."""
    done = [r for r in runs if r.complete]
    lost = [r.readings - r.stored for r in runs if not r.complete]
    losses = (
        f"; **lost readings in {len(lost)} of {len(runs)} rounds** ({_spread(lost)} each)"
        if lost
        else ""
    )
    head = f"| {per} reading(s)/message | {side} |"
    if not done:
        starts = f"{_ms([r.connect_s for r in runs])} | {_ms([r.first_s for r in runs])}"
        return f"{head} — | — | {starts} | —{losses} |"
    launch = statistics.median(r.from_launch for r in done)
    first = statistics.median(r.from_first for r in done)
    ratio = ""
    if side != COLLECTOR:
        ratio = (
            f"{statistics.median(r.from_launch for r in ours) / launch:.2f}×"
            f" / {statistics.median(r.from_first for r in ours) / first:.2f}×"
        )
    return (
        f"{head} {_spread([r.from_launch for r in done])} | {_spread([r.from_first for r in done])}"
        f" | {_ms([r.connect_s for r in done])} | {_ms([r.first_s for r in done])}"
        f" | {ratio}{losses} |"
    )


def report(results: dict[int, dict[str, list[Run]]], poll_s: float) -> None:
    """Medians (min–max) per message shape and side, and lingtan collect's ratio to each."""
    print(
        "| backlog | side | readings/s from launch | readings/s from first stored"
        " | launch → connected | launch → first stored"
        " | lingtan collect ÷ this, from launch / first |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for per, sides in results.items():
        for side, runs in sides.items():
            print(_row(per, side, runs, sides[COLLECTOR]))
    print(
        f"(end: the backlog's last message looked for in InfluxDB every {poll_s:g} s, then"
        " every reading counted; the first reading: counted every 0.05 s)"
    )
    for per, sides in results.items():
        own = [r.readings / r.own_last_s for r in sides[COLLECTOR] if r.own_last_s]
        spooled = [r.spooled for r in sides[COLLECTOR]]
        print(
            f"lingtan collect, {per} reading(s)/message, by its own clock (launch → last batch"
            f" durable, lingtan_collector_last_durable_timestamp_seconds): {_spread(own)}"
            f" readings/s from launch; batches spooled (durable on disk, in InfluxDB later, yet"
            f" counted by that clock): {', '.join(map(str, spooled))}"
        )


def _summary(side: str, run: Run) -> str:
    spooled = f", {run.spooled} batches spooled" if run.spooled else ""
    rates = (
        f"{run.from_launch:,.0f} readings/s from launch, {run.from_first:,.0f} from the first"
        if run.complete
        else f"LOST {run.readings - run.stored:,} of {run.readings:,} readings"
    )
    return (
        f"{side}: connected after {run.connect_s * 1000:,.0f} ms, first stored after"
        f" {run.first_s * 1000:,.0f} ms, {rates}{spooled} (a look for the last message took"
        f" {run.probe_s * 1000:,.1f} ms, median; a count up to {run.count_s * 1000:,.0f} ms)"
    )


def run_rounds(
    bench: Bench, backlog: dict[int, list[tuple[str, bytes]]], flows: list[str], repeat: int
) -> dict[int, dict[str, list[Run]]]:
    """Each round drains every backlog with every side, which goes first alternating."""
    sides = [COLLECTOR, *(f"Node-RED {f}" for f in flows)]
    results: dict[int, dict[str, list[Run]]] = {p: {s: [] for s in sides} for p in backlog}
    for r in range(repeat):
        for per, msgs in backlog.items():
            order = sides if r % 2 == 0 else sides[::-1]
            for side in order:
                run = one_drain(bench, side, msgs, f"r{r}-{per}")
                results[per][side].append(run)
                print(
                    f"  round {r + 1}, {per} reading(s)/message, {_summary(side, run)}",
                    file=sys.stderr,
                )
    return results


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--messages",
        type=int,
        default=100_000,
        help="MQTT messages per backlog (default 100000; quick check: 20000)",
    )
    ap.add_argument("--devices", type=int, default=200, help="meters sending (default 200)")
    ap.add_argument(
        "--per-message",
        default="1,10",
        help="readings per MQTT message, comma-separated: one backlog each (default 1,10)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="rounds, medians with min–max (3)")
    ap.add_argument(
        "--flows",
        default=",".join(FLOWS),
        help="Node-RED flows to run, comma-separated: direct (one write per message),"
        " joined (one write per --join-count messages or 100 ms); default both",
    )
    ap.add_argument(
        "--join-count",
        type=int,
        default=1000,
        help="messages per InfluxDB write in the joined flow (default 1000)",
    )
    ap.add_argument(
        "--poll-s",
        type=float,
        default=0.1,
        help="seconds between looks for the backlog's last message in InfluxDB, a cheap query"
        " (default 0.1)",
    )
    ap.add_argument(
        "--stall-s",
        type=float,
        default=20.0,
        help="a drain whose count has not grown for this long ends short: readings lost"
        " (Node-RED acks before writing; default 20)",
    )
    ap.add_argument(
        "--max-sockets",
        type=int,
        default=8,
        help="Node-RED's concurrent HTTP requests (InfluxDB writes) at most, set in its"
        " settings.js (default 8; 0: Node's default, unbounded, which loses readings on a"
        " backlog: influxd times out the flood of writes)",
    )
    ap.add_argument(
        "--nodered-dir",
        type=Path,
        default=DEFAULT_NODERED_DIR,
        help=f"where Node-RED is (or is npm-installed once) (default {DEFAULT_NODERED_DIR})",
    )
    ap.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the work directory (logs, Node-RED's user dirs and flows) and print its path",
    )
    return ap


def main() -> int:
    ap = _parser()
    args = ap.parse_args()
    flows = [f.strip() for f in args.flows.split(",") if f.strip()]
    if not flows or any(f not in FLOWS for f in flows):
        ap.error(f"--flows: use {', '.join(FLOWS)}")
    red = ensure_nodered(args.nodered_dir)
    kinds = [int(k) for k in args.per_message.split(",")]
    backlog = {}
    for per in kinds:
        readings = (args.messages * per // args.devices) * args.devices
        backlog[per] = build_messages(readings, args.devices, per)
    print(
        f"Node-RED comparison: {args.messages:,} messages per backlog from {args.devices}"
        f" devices, {', '.join(map(str, kinds))} reading(s) per message; {args.repeat} rounds;"
        f" Node-RED flows: {', '.join(flows)}; {os.cpu_count()} cores;"
        f" load average {os.getloadavg()[0]:.1f} at the start"
    )
    work = Path(tempfile.mkdtemp(prefix="lingtan-bench-nodered-"))
    (work / "parks.yaml").write_text(parks_yaml(args.devices))
    broker = MosquittoServer(work / "mosquitto")
    broker.start()
    try:
        with running_influx(work / "influxd", database="bench") as influx:
            env = {
                "LINGTAN_MQTT_URL": broker.url,
                "LINGTAN_INFLUX_URL": influx.url,
                "LINGTAN_METRICS_PORT": str(free_port()),
                "LINGTAN_CLIENT_ID": COLLECTOR_CLIENT_ID,
                "LINGTAN_LOG_LEVEL": "WARNING",
                "LINGTAN_ROLLUP_INTERVAL_S": "0",
                "LINGTAN_PARKS": str(work / "parks.yaml"),
            }
            opts = Options(args.poll_s, args.stall_s, args.join_count, args.max_sockets)
            bench = Bench(broker, influx, work, red, opts, env)
            results = run_rounds(bench, backlog, flows, args.repeat)
        report(results, args.poll_s)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        broker.stop()
        if args.keep_work:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
