"""Ingest benchmark: collector throughput against a bare C client's; start-up; publish→stored.

Starts its own Mosquitto (the shipped config) and influxd on free ports, then, in each of
`--repeat` rounds and for each `--per-message` size, drains the same backlog twice (which
goes first alternates by round), so the Python publisher is not what is measured:

1. baseline: the backlog is queued for a persistent session, then a bare `mosquitto_sub` (C,
   QoS 1) drains it, stamping each message as it takes it (`-F %U`);
2. product: the same backlog is queued for the collector's persistent session(s), then
   `lingtan collect --workers N` (separate processes; validation, interval energies, InfluxDB
   writes, acks once durable) drains it; every reading is then counted in InfluxDB.
3. latency: gateways publish live at a fixed rate while probe readings are timed from
   publish until they are visible in InfluxDB (p50/p99).

Each side's session is removed (a clean-session connect under its client id) once it has
drained, so neither competes with the other's queued messages. Start-up (process launch →
first message taken, or first batch durable) is reported apart from the drain rate, which
runs from the first message to the last. Nothing polls the collector during its drain (see
`collector_drain`). Single-reading messages are reported in msgs/s, arrays in readings/s,
each beside the baseline of the same round: medians with min/max, and the ratio.

    .venv/bin/python bench/ingest.py                      # 100k messages, 1 and 10 per message
    .venv/bin/python bench/ingest.py --messages 20000 --no-latency      # quick check
    .venv/bin/python bench/ingest.py --workers 2 --per-message 1

`--format native,sparkplug,neuron,json` repeats (2) for the same readings sent as each
gateway format (docs/gateways.md), each into its own database, and prints them beside the
native JSON of the same round: Sparkplug B as one DDATA per meter and minute (alias-only,
energy in Wh scaled back by the registry), Neuron as one values-format upload per 20
meters and minute, json as one `records` array per 20 meters and minute.

`--persistence` measures the broker's persistence settings instead (docs/broker.md): for
each setting in turn (baseline first: the previous shipped `autosave_interval 60`), a fresh
Mosquitto with that setting takes the same backlog (timed until every message is PUBACKed),
a bare `mosquitto_sub` drains it, then `lingtan collect` drains it again into InfluxDB;
rounds alternate the settings, medians of `--repeat` rounds with min/max. Then the crash
window: a backlog is PUBACKed, the broker SIGKILLed after a wait and restarted, and what
survived is counted, per setting and wait.

    .venv/bin/python bench/ingest.py --persistence --readings 100000 --devices 200
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from pysparkplug import DataType, DBirth, DData, Metric, NBirth  # noqa: E402

from collectors.mqtt import GmqttPublisher, GmqttSubscriber, MqttEndpoint  # noqa: E402
from tests.fixtures.influx import InfluxServer, running_influx  # noqa: E402
from tests.fixtures.mosquitto import MosquittoServer, free_port  # noqa: E402

T0_S = 1_795_000_000  # 2026-11-18, safely in the past


def parks_yaml(devices: int) -> str:
    lines = [
        "parks:",
        "  - id: bench",
        "    timezone: Asia/Shanghai",
        "    devices:",
        "      - {id: grid-main, role: grid}",
    ]
    lines += [f"      - {{id: m{i}, role: load, included_in: grid-main}}" for i in range(devices)]
    return "\n".join(lines) + "\n"


def build_messages(readings: int, devices: int, per_message: int) -> list[tuple[str, bytes]]:
    """Each device's meter ticks once a minute; grouped per device into arrays of per_message."""
    per_device = readings // devices
    out: list[tuple[str, bytes]] = []
    for i in range(devices):
        topic = f"lingtan/v1/bench/m{i}/telemetry"
        rows = [
            {
                "ts": T0_S + 60 * k,
                "energy_import_kwh": round(1000.0 + 1.5 * k, 3),
                "power_kw": 90.0,
            }
            for k in range(per_device)
        ]
        for j in range(0, per_device, per_message):
            chunk = rows[j : j + per_message]
            body = chunk[0] if per_message == 1 else chunk
            out.append((topic, json.dumps(body).encode()))
    # interleave devices as a real fleet would
    out.sort(key=lambda m: json.loads(m[1])["ts"] if per_message == 1 else 0)
    return out


FORMATS = ("native", "sparkplug", "neuron", "json")
GROUP = 20  # meters per Neuron group / json records message


def _source(fmt: str, i: int) -> str:
    if fmt == "sparkplug":
        return (
            "source: {format: sparkplug, group: bench, edge: edge1, device: "
            f"m{i}, quantities: {{energy_import_kwh: {{metric: EP, scale: 0.001}},"
            " power_kw: {metric: P}}}"
        )
    if fmt == "neuron":
        return (
            f"source: {{format: neuron, node: dlt645, group: g{i // GROUP}, quantities:"
            f" {{energy_import_kwh: {{tag: m{i}.EP, scale: 0.001}}, power_kw: {{tag: m{i}.P}}}}}}"
        )
    return (
        "source: {format: json, topic: vendor/bench/up, layout: records, ts_format: epoch_s,"
        f" quantities: {{energy_import_kwh: {{tag: m{i}.EP}}, power_kw: {{tag: m{i}.P}}}}}}"
    )


def format_parks_yaml(devices: int, fmt: str) -> str:
    if fmt == "native":
        return parks_yaml(devices)
    lines = ["parks:", "  - id: bench", "    timezone: Asia/Shanghai", "    devices:"]
    lines += [f"      - {{id: m{i}, role: load, {_source(fmt, i)}}}" for i in range(devices)]
    return "\n".join(lines) + "\n"


def _energy(k: int) -> float:
    return round(1000.0 + 1.5 * k, 3)


def build_format_messages(fmt: str, readings: int, devices: int) -> list[tuple[str, bytes]]:
    """The readings of `build_messages(..., 1)` as gateway `fmt` sends them, minute by minute."""
    per_device = readings // devices
    out: list[tuple[str, bytes]] = []
    if fmt == "sparkplug":
        seq = 0

        def nxt() -> int:
            nonlocal seq
            seq, current = (seq + 1) % 256, seq
            return current

        node = NBirth(
            timestamp=T0_S * 1000,
            seq=nxt(),
            metrics=(Metric(timestamp=None, name="bdSeq", datatype=DataType.INT64, value=0),),
        )
        out.append(("spBv1.0/bench/NBIRTH/edge1", node.encode(include_dtypes=True)))
        for k in range(per_device):
            for i in range(devices):
                wh = round(_energy(k) * 1000)
                topic = f"spBv1.0/bench/{'DBIRTH' if k == 0 else 'DDATA'}/edge1/m{i}"
                names = ("EP", "P") if k == 0 else (None, None)
                metrics = (
                    Metric(None, names[0], DataType.UINT64, value=wh, alias=2 * i),
                    Metric(None, names[1], DataType.DOUBLE, value=90.0, alias=2 * i + 1),
                )
                ts = (T0_S + 60 * k) * 1000
                if k == 0:
                    body = DBirth(timestamp=ts, seq=nxt(), metrics=metrics).encode(
                        include_dtypes=True
                    )
                else:
                    body = DData(timestamp=ts, seq=nxt(), metrics=metrics).encode()
                out.append((topic, body))
        return out
    for k in range(per_device):
        for g in range(0, devices, GROUP):
            members = range(g, min(g + GROUP, devices))
            if fmt == "neuron":
                values: dict[str, float | int] = {}
                for i in members:
                    values[f"m{i}.EP"] = round(_energy(k) * 1000)
                    values[f"m{i}.P"] = 90.0
                doc: object = {
                    "timestamp": (T0_S + 60 * k) * 1000,
                    "node": "dlt645",
                    "group": f"g{g // GROUP}",
                    "values": values,
                    "errors": {},
                }
                topic = f"/neuron/lingtan/dlt645/g{g // GROUP}"
            else:
                doc = [
                    row
                    for i in members
                    for row in (
                        {"name": f"m{i}.EP", "value": _energy(k), "ts": T0_S + 60 * k},
                        {"name": f"m{i}.P", "value": 90.0, "ts": T0_S + 60 * k},
                    )
                ]
                topic = "vendor/bench/up"
            out.append((topic, json.dumps(doc).encode()))
    return out


def decode_rates(
    formats: list[str], readings: int, devices: int, rounds: int = 5
) -> dict[str, float]:
    """Readings/s of the decoder alone (no broker, no storage) per format, best of `rounds`
    interleaved rounds: the formats' own cost, less exposed to a shared machine's noise."""
    from app.registry import parse_registry
    from app.telemetry.formats import GatewayDecoder

    now_ns = (T0_S + 10 * 86_400) * 10**9
    cases = {}
    for fmt in ["native", *formats]:
        decoder = GatewayDecoder(parse_registry(format_parks_yaml(devices, fmt)))
        msgs = (
            build_messages(readings, devices, 1)
            if fmt == "native"
            else build_format_messages(fmt, readings, devices)
        )
        cases[fmt] = (decoder, msgs)
    best = dict.fromkeys(cases, 0.0)
    for _ in range(rounds):
        for fmt, (decoder, msgs) in cases.items():
            started = time.perf_counter()
            n = 0
            for topic, payload in msgs:
                n += len(decoder.decode(topic, payload, now_ns).readings)
            if n != readings:
                raise RuntimeError(f"{fmt}: decoded {n} readings, expected {readings}")
            best[fmt] = max(best[fmt], n / (time.perf_counter() - started))
    return best


async def queue_for_session(url: str, client_id: str, messages: list[tuple[str, bytes]]) -> None:
    """Create a persistent session, disconnect it, and publish the backlog into its queue."""

    async def ignore(_t: str, _p: bytes) -> None:
        return None

    sub = GmqttSubscriber(MqttEndpoint.parse(url), "lingtan/v1/+/+/telemetry", client_id)
    task = asyncio.create_task(sub.run(ignore))
    await asyncio.wait_for(sub.connected.wait(), 10)
    await sub.stop()
    await task
    pub = GmqttPublisher(MqttEndpoint.parse(url))
    await pub.connect()
    for topic, payload in messages:
        await pub.publish(topic, payload, qos=1)
    await pub.drain(timeout_s=600)
    await pub.close()


async def _publish_only(url: str, messages: list[tuple[str, bytes]]) -> float:
    """Seconds until the broker PUBACKed every message."""
    pub = GmqttPublisher(MqttEndpoint.parse(url))
    await pub.connect()
    started = time.perf_counter()
    for topic, payload in messages:
        await pub.publish(topic, payload, qos=1)
    await pub.drain(timeout_s=600)
    elapsed = time.perf_counter() - started
    await pub.close()
    return elapsed


def metric(port: int, name: str) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return -1.0
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


@dataclass(frozen=True)
class Drain:
    """One timed drain. `startup_s`: process launch until the first message was received (the
    bare client) or the first batch was durable (the collector). `drain_s`: from then until the
    last, during which `counted` messages (bare client) or readings (collector) arrived."""

    startup_s: float
    drain_s: float
    counted: int

    @property
    def rate(self) -> float:
        return self.counted / self.drain_s


def drop_session(broker: MosquittoServer, client_id: str) -> None:
    """Connect once with a clean session under `client_id`: the broker discards its persistent
    session and whatever is queued for it, so it cannot compete with the next client's."""
    subprocess.run(
        [
            shutil.which("mosquitto_sub") or "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-i",
            client_id,
            "-t",
            "lingtan/v1/+/+/telemetry",
            "-E",
        ],
        stdout=subprocess.DEVNULL,
        check=True,
    )


def baseline_drain(broker: MosquittoServer, messages: list[tuple[str, bytes]], out: Path) -> Drain:
    """A bare `mosquitto_sub` (C, QoS 1) drains the backlog queued for its persistent session.

    It stamps each message as it takes it (`-F %U`, Unix time with nanoseconds) into a file, so
    the drain is timed from its first message to its last; its session is removed afterwards.
    """
    args = _ceiling_args(broker)
    subprocess.run([*args, "-E"], stdout=subprocess.DEVNULL, check=True)  # register, leave
    asyncio.run(_publish_only(broker.url, messages))
    launched = time.time()
    with out.open("wb") as f:
        subprocess.run([*args, "-C", str(len(messages)), "-F", "%U"], stdout=f, check=True)
    stamps = out.read_text().split()
    drop_session(broker, "bench-ceiling")
    first, last = float(stamps[0]), float(stamps[-1])
    return Drain(first - launched, last - first, len(stamps) - 1)


def start_collector(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lingtan", "collect", *args],
            env={**os.environ, **env},
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _alive(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"collector exited: {log.read_text()[-2000:]}")


def wait_connected(ports: list[int], proc: subprocess.Popen[bytes], log: Path) -> None:
    while any(metric(p, "lingtan_collector_mqtt_connected") != 1.0 for p in ports):
        _alive(proc, log)
        time.sleep(0.05)


def stop_collector(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def count_readings(influx: InfluxServer) -> int:
    rows = influx.points('SELECT count("energy_import_kwh") FROM reading')
    return int(rows[0]["count"]) if rows else 0


def worker_ids(env: dict[str, str], workers: int) -> list[str]:
    """The MQTT client ids `lingtan collect --workers` connects with."""
    base = env["LINGTAN_CLIENT_ID"]
    return [base] if workers == 1 else [f"{base}-{k}" for k in range(1, workers + 1)]


def collector_drain(
    broker: MosquittoServer,
    influx: InfluxServer,
    messages: list[tuple[str, bytes]],
    readings: int,
    env: dict[str, str],
    workers: int,
    log: Path,
    earliest_rate: float,
) -> Drain:
    """`lingtan collect --workers N` drains the backlog queued for its persistent session(s).

    How the end is found without disturbing the drain: the collector's /metrics is read every
    20 ms only until the first batch is durable (start-up: the drain has not begun yet); then
    nothing asks the collector anything until the backlog could have been drained at
    `earliest_rate` readings/s (the bare client's rate, which it cannot beat by much), and from
    then on once a second (one scrape, well under a millisecond of its CPU a second). The end
    is the collector's own clock: `lingtan_collector_last_durable_timestamp_seconds`, set when
    the batch that held the last readings was made durable, not the moment the bench looked.
    With several workers, start-up ends with the first batch of any of them.
    """
    ports = [int(env["LINGTAN_METRICS_PORT"]) + k for k in range(workers)]
    args = ("--workers", str(workers))
    # the first start registers the persistent session(s); outside any timing
    proc = start_collector(env, log, *args)
    try:
        wait_connected(ports, proc, log)
    finally:
        stop_collector(proc)
    asyncio.run(_publish_only(broker.url, messages))

    def stored() -> float:
        return sum(max(0.0, metric(p, "lingtan_collector_readings_total")) for p in ports)

    launched = time.time()
    proc = start_collector(env, log, *args)
    try:
        while True:
            before = time.time()
            first_n = stored()
            if first_n > 0:
                first_t = (before + time.time()) / 2
                break
            _alive(proc, log)
            time.sleep(0.02)
        time.sleep(max(0.0, (readings - first_n) / earliest_rate))
        while (done := stored()) < readings:
            _alive(proc, log)
            print(f"  … {done:,.0f} / {readings:,} readings stored", file=sys.stderr)
            time.sleep(1.0)
        last_t = max(metric(p, "lingtan_collector_last_durable_timestamp_seconds") for p in ports)
    finally:
        stop_collector(proc)
    for client_id in worker_ids(env, workers):
        drop_session(broker, client_id)
    got = count_readings(influx)
    if got != readings:
        raise RuntimeError(f"stored {got} readings, expected {readings}")
    if first_n > readings / 2:
        raise RuntimeError(
            f"{first_n:,.0f} of {readings:,} readings were durable at the first look: too small"
            " a backlog to time a drain, give more messages"
        )
    return Drain(first_t - launched, last_t - first_t, int(readings - first_n))


async def latency(
    broker: MosquittoServer, influx: InfluxServer, rate: float, seconds: float, devices: int
) -> list[float]:
    """Publish→visible-in-InfluxDB latency of probe readings under a steady live load."""
    pub = GmqttPublisher(MqttEndpoint.parse(broker.url))
    await pub.connect()
    stop = asyncio.Event()
    base = T0_S - 20 * 86_400  # in the past: the collector refuses future timestamps

    async def load() -> None:
        k = 0
        interval = 1.0 / rate
        next_at = time.perf_counter()
        while not stop.is_set():
            i = k % devices
            body = {"ts": base + k // devices, "power_kw": 1.0}
            await pub.publish(f"lingtan/v1/bench/m{i}/telemetry", json.dumps(body).encode())
            k += 1
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

    loader = asyncio.create_task(load())
    # one client for every look (a client per query costs the bench ~50 ms of CPU each, taken
    # from the two cores the collector runs on)
    client = httpx.AsyncClient(timeout=10)
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    n = 0
    warmup = 3  # the first probes pay for the probe device's history lookup: not steady state
    while time.perf_counter() < deadline:
        ts = base - 5 * 86_400 + n
        n += 1
        body = json.dumps({"ts": ts, "power_kw": float(n)}).encode()
        sent = time.perf_counter()
        await pub.publish("lingtan/v1/bench/grid-main/telemetry", body)
        q = f"SELECT power_kw FROM reading WHERE device='grid-main' AND time = {ts * 10**9}"
        while not await _has_rows(client, influx, q):
            await asyncio.sleep(0.002)
        if n > warmup:
            samples.append((time.perf_counter() - sent) * 1000)
        await asyncio.sleep(0.05)
    stop.set()
    await loader
    await pub.close()
    await client.aclose()
    return samples


async def _has_rows(client: httpx.AsyncClient, influx: InfluxServer, q: str) -> bool:
    r = await client.get(
        f"{influx.url}/query", params={"db": influx.database, "epoch": "ns", "q": q}
    )
    r.raise_for_status()
    return any(res.get("series") for res in r.json().get("results", []))


#: Persistence settings `--persistence` can compare, by id: (label, config lines).
PERSISTENCE_CHOICES: dict[str, tuple[str, str]] = {
    "60": ("autosave_interval 60 (before)", "autosave_interval 60"),
    "1": ("autosave_interval 1 (shipped)", "autosave_interval 1"),
    "changes10000": (
        "autosave_on_changes, 10000",
        "autosave_on_changes true\nautosave_interval 10000",
    ),
    "changes1000": (
        "autosave_on_changes, 1000",
        "autosave_on_changes true\nautosave_interval 1000",
    ),
}
#: Compared by default; the first one given is the baseline.
PERSISTENCE_SETTINGS: dict[str, str] = dict(PERSISTENCE_CHOICES.values())
_PERSISTENCE_KEYS = ("autosave_interval", "autosave_on_changes")


def _broker(work: Path, name: str, setting: str) -> MosquittoServer:
    broker = MosquittoServer(work / name, extra_conf=setting, drop=_PERSISTENCE_KEYS)
    broker.start()
    return broker


def _ceiling_args(broker: MosquittoServer) -> list[str]:
    return [
        shutil.which("mosquitto_sub") or "mosquitto_sub",
        "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-c", "-i", "bench-ceiling",
        "-t", "lingtan/v1/+/+/telemetry",
    ]  # fmt: skip


def persistence_round(
    work: Path,
    name: str,
    setting: str,
    influx: InfluxServer,
    messages: list[tuple[str, bytes]],
    readings: int,
    base_env: dict[str, str],
) -> tuple[float, float, float]:
    """(publish s until all PUBACKed, bare drain s, collector drain s) on a fresh broker."""
    broker = _broker(work, name, setting)
    try:
        args = _ceiling_args(broker)
        subprocess.run([*args, "-E"], stdout=subprocess.DEVNULL, check=True)
        t_pub = asyncio.run(_publish_only(broker.url, messages))
        db_file = broker.data_dir / "mosquitto.db"
        time.sleep(2.5)  # let a time-based autosave happen: its file size is what each one writes
        size = db_file.stat().st_size if db_file.exists() else 0
        print(f"  {name}: mosquitto.db {size / 1e6:.1f} MB after the backlog", file=sys.stderr)
        started = time.perf_counter()
        subprocess.run([*args, "-C", str(len(messages))], stdout=subprocess.DEVNULL, check=True)
        t_drain = time.perf_counter() - started
        # a clean session ends the bare client's: the collector's backlog is queued once
        clean = [a for a in args if a != "-c"]
        subprocess.run([*clean, "-E"], stdout=subprocess.DEVNULL, check=True)
        db = f"bench_{name.replace('-', '_')}"
        env = {
            **base_env,
            "LINGTAN_MQTT_URL": broker.url,
            "LINGTAN_INFLUX_DB": db,
            "LINGTAN_DATA_DIR": str(work / name / "data-collector"),
        }
        db_influx = influx.using(db)
        db_influx.create_database(db)
        drained = collector_drain(
            broker,
            db_influx,
            messages,
            readings,
            env,
            1,
            work / name / "collector.log",
            earliest_rate=readings / t_drain,
        )
        t_coll = readings / drained.rate  # the backlog's time at the drain rate, start-up apart
    finally:
        broker.stop()
    return t_pub, t_drain, t_coll


def crash_window(
    work: Path, name: str, setting: str, messages: list[tuple[str, bytes]], wait_s: float
) -> int:
    """Messages still queued after: backlog PUBACKed, `wait_s`, SIGKILL, restart."""
    broker = _broker(work, name, setting)
    try:
        args = _ceiling_args(broker)
        subprocess.run([*args, "-E"], stdout=subprocess.DEVNULL, check=True)
        asyncio.run(_publish_only(broker.url, messages))
        time.sleep(wait_s)
        broker.kill()
        broker.start()
        out = subprocess.run([*args, "-W", "2"], capture_output=True, check=False)
        return out.stdout.count(b"\n")
    finally:
        broker.stop()


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):>9,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def persistence_main(args: argparse.Namespace, readings: int, work: Path) -> None:
    chosen = PERSISTENCE_SETTINGS
    if args.settings:
        chosen = dict(PERSISTENCE_CHOICES[k] for k in args.settings.split(","))
    per_message = int(args.per_message.split(",")[0])
    messages = build_messages(readings, args.devices, per_message)
    print(
        f"broker persistence: {len(messages):,} messages of {per_message} reading(s) per"
        f" round, {args.repeat} rounds, settings alternating; msgs/s, median (min–max)"
    )
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in chosen}
    with running_influx(work / "influxd", database="bench") as influx:
        base_env = {
            "LINGTAN_INFLUX_URL": influx.url,
            "LINGTAN_PARKS": str(work / "parks.yaml"),
            "LINGTAN_METRICS_PORT": str(free_port()),
            "LINGTAN_CLIENT_ID": "bench-collector",
            "LINGTAN_LOG_LEVEL": "WARNING",
        }
        for r in range(args.repeat):
            for i, (label, setting) in enumerate(chosen.items()):
                name = f"r{r}-s{i}"
                results[label].append(
                    persistence_round(work, name, setting, influx, messages, readings, base_env)
                )
                shutil.rmtree(work / name, ignore_errors=True)
                t_pub, t_drain, t_coll = results[label][-1]
                print(
                    f"  round {r + 1} {label}: publish {len(messages) / t_pub:,.0f},"
                    f" bare drain {len(messages) / t_drain:,.0f},"
                    f" collector {len(messages) / t_coll:,.0f} msgs/s",
                    file=sys.stderr,
                )
    base = next(iter(chosen))
    n = len(messages)

    def rates(label: str, k: int) -> list[float]:
        return [n / t[k] for t in results[label]]

    def paired(label: str, k: int) -> str:
        """Median of the per-round ratios to the baseline (a busy moment hits both alike)."""
        ratios = [b[k] / t[k] for t, b in zip(results[label], results[base], strict=True)]
        return f"{statistics.median(ratios):.0%}"

    print(
        f"| setting | publish → PUBACK | bare drain | lingtan collect drain"
        f" | vs {base}, paired by round |"
    )
    print("| --- | --- | --- | --- | --- |")
    for label in chosen:
        rel = [paired(label, k) for k in range(3)]
        print(
            f"| {label} | {_spread(rates(label, 0))} | {_spread(rates(label, 1))}"
            f" | {_spread(rates(label, 2))} | {' / '.join(rel)} |"
        )
    if args.no_window:
        return
    window_msgs = messages[: args.window_messages]
    print(
        f"crash window: {len(window_msgs):,} messages PUBACKed, then wait, SIGKILL, restart;"
        " messages that survived"
    )
    waits = (0.5, 1.0, 2.0, 3.0)
    print("| setting | " + " | ".join(f"{w:g} s" for w in waits) + " |")
    print("| --- |" + " --- |" * len(waits))
    for i, (label, setting) in enumerate(chosen.items()):
        kept = [
            crash_window(work, f"w{i}-{k}", setting, window_msgs, w) for k, w in enumerate(waits)
        ]
        print(f"| {label} | " + " | ".join(f"{k:,}" for k in kept) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--messages", type=int, default=100_000, help="messages per drain (quick check: 20000)"
    )
    ap.add_argument("--readings", type=int, default=100_000, help="readings (--persistence)")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument(
        "--per-message",
        default="1,10",
        help="readings per MQTT message, comma-separated: one backlog each (--persistence: one)",
    )
    ap.add_argument(
        "--workers",
        "--collectors",
        type=int,
        default=1,
        help="lingtan collect --workers N (processes on an MQTT shared subscription)",
    )
    ap.add_argument(
        "--format",
        default="native",
        help="comma-separated gateway formats to drain besides native JSON:"
        " sparkplug, neuron, json (docs/gateways.md)",
    )
    ap.add_argument("--no-latency", action="store_true", help="skip phase 3")
    ap.add_argument(
        "--startup-only",
        action="store_true",
        help="only the collector's launch → first batch durable (--repeat rounds, a backlog of"
        " --messages queued), with the phases from its own log",
    )
    ap.add_argument("--latency-rate", type=float, default=2000.0, help="live msgs/s in phase 3")
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument(
        "--persistence",
        action="store_true",
        help="compare the broker's persistence settings (docs/broker.md) instead",
    )
    ap.add_argument("--repeat", type=int, default=3, help="rounds (medians with min/max)")
    ap.add_argument(
        "--settings",
        help="--persistence settings to compare, baseline first, comma-separated"
        f" (of {','.join(PERSISTENCE_CHOICES)}; default all)",
    )
    ap.add_argument(
        "--no-window", action="store_true", help="--persistence without the crash window"
    )
    ap.add_argument(
        "--window-messages",
        type=int,
        default=2500,
        help="backlog of the crash-window probe (not a multiple of the autosave_on_changes counts)",
    )
    args = ap.parse_args()
    formats = [f.strip() for f in args.format.split(",") if f.strip() and f.strip() != "native"]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        ap.error(f"unknown format(s) {unknown}: use {', '.join(FORMATS)}")

    readings = (args.readings // args.devices) * args.devices
    precompile()
    if args.persistence:
        work = Path(tempfile.mkdtemp(prefix="lingtan-bench-"))
        (work / "parks.yaml").write_text(parks_yaml(args.devices))
        try:
            persistence_main(args, readings, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    work = Path(tempfile.mkdtemp(prefix="lingtan-bench-"))
    (work / "parks.yaml").write_text(parks_yaml(args.devices))
    try:
        if args.startup_only:
            startup_main(args, work)
            return 0
        drain_main(args, formats, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _log_phases(log: Path, launched: float) -> list[tuple[float, str]]:
    """(seconds since launch, message) of each line the collector logged."""
    out = []
    for line in log.read_text().splitlines():
        try:
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        level_name, _, message = line[24:].partition(": ")
        if level_name.split(" ")[-1].split(".")[0] in ("app", "collectors", "lingtan"):
            out.append((at - launched, message[:60]))
    return out


def startup_round(
    broker: MosquittoServer, messages: list[tuple[str, bytes]], env: dict[str, str], log: Path
) -> tuple[float, float, list[tuple[float, str]]]:
    """Launch → first batch durable (wall, and the collector's CPU) of one collector start
    with `messages` queued, polling its /metrics every 5 ms (the drain is not timed here)."""
    port = int(env["LINGTAN_METRICS_PORT"])
    proc = start_collector(env, log)  # registers the persistent session, untimed
    try:
        wait_connected([port], proc, log)
    finally:
        stop_collector(proc)
    asyncio.run(_publish_only(broker.url, messages))
    log.write_text("")
    launched = time.time()
    proc = start_collector(env, log)
    try:
        while metric(port, "lingtan_collector_readings_total") <= 0:
            _alive(proc, log)
            time.sleep(0.005)
        first_s = time.time() - launched
        cpu_s = _cpu_s(proc.pid)
    finally:
        stop_collector(proc)
    drop_session(broker, env["LINGTAN_CLIENT_ID"])
    phases = [p for p in _log_phases(log, launched) if not p[1].startswith("stopping")]
    return first_s, cpu_s, phases


def _cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far: steadier than wall time on a
    shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def precompile() -> None:
    """Compile the project's modules, as an installed package has them (pip does it at
    install); a checkout run with PYTHONDONTWRITEBYTECODE=1 would compile them from source at
    every collector start, and that start-up would be charged to the product."""
    for package in ("app", "collectors", "lingtan"):
        compileall.compile_dir(REPO / package, quiet=2)


def startup_main(args: argparse.Namespace, work: Path) -> None:
    """`--startup-only`: rounds of one collector start each, with a fresh database."""
    readings = (args.messages // args.devices) * args.devices
    msgs = build_messages(readings, args.devices, 1)
    print(
        f"collector start-up: {readings:,} messages queued from {args.devices} devices"
        " (project modules precompiled, as installed)"
    )
    broker = MosquittoServer(work / "mosquitto")
    broker.start()
    firsts, cpus = [], []
    try:
        with running_influx(work / "influxd", database="bench") as influx:
            for r in range(args.repeat):
                db = f"startup_{r}"
                influx.using(db).create_database()
                env = {
                    "LINGTAN_MQTT_URL": broker.url,
                    "LINGTAN_INFLUX_URL": influx.url,
                    "LINGTAN_INFLUX_DB": db,
                    "LINGTAN_PARKS": str(work / "parks.yaml"),
                    "LINGTAN_DATA_DIR": str(work / f"data-startup-{r}"),
                    "LINGTAN_METRICS_PORT": str(free_port()),
                    "LINGTAN_CLIENT_ID": "bench-startup",
                    "LINGTAN_LOG_LEVEL": "INFO",
                    "LINGTAN_ROLLUP_INTERVAL_S": "0",
                }
                first_s, cpu_s, phases = startup_round(broker, msgs, env, work / f"startup-{r}.log")
                firsts.append(first_s)
                cpus.append(cpu_s)
                print(
                    f"  round {r + 1}: first batch durable {first_s * 1000:,.0f} ms after launch"
                    f" ({cpu_s * 1000:,.0f} ms of the collector's CPU)"
                )
                for at, what in phases:
                    print(f"    {at * 1000:6,.0f} ms  {what}")
                influx.using(db).drop_database()
    finally:
        broker.stop()
    print(f"launch → first batch durable, median (min–max): {_ms(firsts)}")
    print(f"collector CPU until then, median (min–max): {_ms(cpus)}")


def _ms(values: list[float]) -> str:
    lo, mid, hi = (1000 * f(values) for f in (min, statistics.median, max))
    return f"{mid:,.0f} ms ({lo:,.0f}–{hi:,.0f})"


def drain_main(args: argparse.Namespace, formats: list[str], work: Path) -> None:
    """Rounds of: the bare client's drain and the collector's, per message size (alternating
    which goes first), then each gateway format's collector drain; medians with min/max."""
    kinds = [int(k) for k in args.per_message.split(",")]
    backlog = {}
    for per in kinds:
        readings = (args.messages * per // args.devices) * args.devices
        backlog[per] = (readings, build_messages(readings, args.devices, per))
    print(
        f"ingest benchmark: {args.messages:,} messages per drain from {args.devices} devices,"
        f" {', '.join(str(k) for k in kinds)} reading(s) per message; {args.repeat} rounds;"
        f" lingtan collect --workers {args.workers}; {os.cpu_count()} cores"
    )
    if formats:
        rates = decode_rates(formats, min(backlog[kinds[0]][0], 20_000), args.devices)
        for fmt, rate in rates.items():
            print(
                f"decoder alone, {fmt:>9}: {rate:>10,.0f} readings/s"
                f"  ({rate / rates['native']:.0%} of native JSON)"
            )
    results: dict[int, list[tuple[Drain, Drain]]] = {per: [] for per in kinds}
    fmt_results: dict[str, list[tuple[Drain, Drain]]] = {fmt: [] for fmt in formats}
    broker = MosquittoServer(work / "mosquitto")
    broker.start()
    try:
        with running_influx(work / "influxd", database="bench") as influx:
            env = {
                "LINGTAN_MQTT_URL": broker.url,
                "LINGTAN_INFLUX_URL": influx.url,
                "LINGTAN_METRICS_PORT": str(free_port()),
                "LINGTAN_CLIENT_ID": "bench-collector",
                "LINGTAN_LOG_LEVEL": "WARNING",
                "LINGTAN_ROLLUP_INTERVAL_S": "0",
            }

            def product(
                name: str, parks: Path, msgs: list[tuple[str, bytes]], readings: int, rate: float
            ) -> Drain:
                db = f"bench_{name.replace('-', '_')}"
                db_influx = influx.using(db)
                db_influx.create_database()
                drain_env = {
                    **env,
                    "LINGTAN_INFLUX_DB": db,
                    "LINGTAN_PARKS": str(parks),
                    "LINGTAN_DATA_DIR": str(work / f"data-{name}"),
                }
                try:
                    return collector_drain(
                        broker,
                        db_influx,
                        msgs,
                        readings,
                        drain_env,
                        args.workers,
                        work / f"collector-{name}.log",
                        earliest_rate=rate,
                    )
                finally:
                    db_influx.drop_database()

            for r in range(args.repeat):
                for per in kinds:
                    readings, msgs = backlog[per]
                    out = work / "baseline.out"
                    name = f"r{r}-{per}"
                    if r % 2 == 0:
                        base = baseline_drain(broker, msgs, out)
                        coll = product(name, work / "parks.yaml", msgs, readings, base.rate * per)
                    else:  # the collector first: drift over a run hits both sides alike
                        # (its earliest possible end: at the previous round's bare-client rate)
                        rate = results[per][-1][0].rate * per
                        coll = product(name, work / "parks.yaml", msgs, readings, rate)
                        base = baseline_drain(broker, msgs, out)
                    results[per].append((base, coll))
                    print(
                        f"  round {r + 1}, {per} reading(s)/message: mosquitto_sub"
                        f" {base.rate * per:,.0f}, lingtan collect {coll.rate:,.0f} readings/s;"
                        f" start-up {base.startup_s * 1000:,.0f} / {coll.startup_s * 1000:,.0f} ms",
                        file=sys.stderr,
                    )
                native = results[kinds[0]][-1][1]
                for fmt in formats:
                    readings = backlog[kinds[0]][0]
                    parks = work / f"parks-{fmt}.yaml"
                    parks.write_text(format_parks_yaml(args.devices, fmt))
                    msgs = build_format_messages(fmt, readings, args.devices)
                    got = product(f"r{r}-{fmt}", parks, msgs, readings, native.rate / 2)
                    fmt_results[fmt].append((native, got))
            report(results, fmt_results, args.workers)
            if args.no_latency:
                return
            live_latency(args, broker, influx, env, work)
    finally:
        broker.stop()


def report(
    results: dict[int, list[tuple[Drain, Drain]]],
    fmt_results: dict[str, list[tuple[Drain, Drain]]],
    workers: int,
) -> None:
    """Single-reading messages in msgs/s, arrays in readings/s; median (min–max) of the rounds,
    the ratio of the medians and the median of each round's own ratio."""
    print(
        f"| backlog | unit | mosquitto_sub (C, QoS 1) | lingtan collect --workers {workers}"
        " → InfluxDB | ratio of medians | ratio per round, median (min–max) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for per, pairs in results.items():
        # the bare client counts messages, the collector readings (with one reading a message,
        # readings/s is msgs/s)
        base = [b.rate * per for b, _ in pairs]
        coll = [c.rate for _, c in pairs]
        unit = "msgs/s" if per == 1 else "readings/s"
        ratios = [c / b for b, c in zip(base, coll, strict=True)]
        print(
            f"| {per} reading(s)/message | {unit} | {_spread(base)} | {_spread(coll)}"
            f" | {statistics.median(coll) / statistics.median(base):.0%}"
            f" | {statistics.median(ratios):.0%} ({min(ratios):.0%}–{max(ratios):.0%}) |"
        )
    print("start-up: process launch → first message taken / first batch durable, median (min–max):")
    for per, pairs in results.items():
        print(
            f"  {per} reading(s)/message: mosquitto_sub {_ms([b.startup_s for b, _ in pairs])},"
            f" lingtan collect {_ms([c.startup_s for _, c in pairs])}"
        )
    for fmt, pairs in fmt_results.items():
        native = [n.rate for n, _ in pairs]
        got = [g.rate for _, g in pairs]
        ratios = [g / n for n, g in zip(native, got, strict=True)]
        print(
            f"lingtan collect, {fmt:>9}: {_spread(got)} readings/s"
            f" ({statistics.median(ratios):.0%} of native JSON's, paired by round;"
            f" start-up {_ms([g.startup_s for _, g in pairs])})"
        )


def live_latency(
    args: argparse.Namespace,
    broker: MosquittoServer,
    influx: InfluxServer,
    env: dict[str, str],
    work: Path,
) -> None:
    """Phase 3: publish→stored latency under a steady live load, one collector."""
    influx.create_database()
    live_env = {
        **env,
        "LINGTAN_INFLUX_DB": influx.database,
        "LINGTAN_PARKS": str(work / "parks.yaml"),
        "LINGTAN_DATA_DIR": str(work / "data-live"),
    }
    log = work / "collector-live.log"
    proc = start_collector(live_env, log)
    try:
        wait_connected([int(env["LINGTAN_METRICS_PORT"])], proc, log)
        samples = asyncio.run(
            latency(broker, influx, args.latency_rate, args.latency_seconds, args.devices)
        )
    finally:
        stop_collector(proc)
    q = statistics.quantiles(samples, n=100)
    print(
        f"publish→stored latency at {args.latency_rate:,.0f} msgs/s live load: "
        f"p50 {statistics.median(samples):.1f} ms, p99 {q[98]:.1f} ms"
        f" ({len(samples)} probes)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
