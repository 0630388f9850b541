"""Ingest benchmark: collector throughput against the broker's ceiling; publish→stored latency.

Starts its own Mosquitto (the shipped config) and influxd on free ports, then:

1. ceiling: N readings are queued on the broker for a persistent session, then a bare
   `mosquitto_sub` (C, QoS 1) drains them; messages/s and readings/s are timed.
2. collector: the same messages are queued for the collector's persistent session, then
   `lingtan collect` (a separate process, validation and interval energies on) drains them
   into InfluxDB; timed until every reading is stored. Printed as a ratio of (1).
3. latency: gateways publish live at a fixed rate while probe readings are timed from
   publish until they are visible in InfluxDB (p50/p99).

Draining a backlog takes the Python publisher out of the measurement. Run:

    .venv/bin/python bench/ingest.py --readings 200000 --devices 500 --per-message 1

`--format native,sparkplug,neuron,json` repeats (2) for the same readings sent as each
gateway format (docs/gateways.md), each into its own database, and prints them beside the
native JSON of the same run: Sparkplug B as one DDATA per meter and minute (alias-only,
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
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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


def ceiling(broker: MosquittoServer, messages: list[tuple[str, bytes]]) -> float:
    """Seconds for a bare mosquitto_sub to drain the backlog."""
    args = [
        shutil.which("mosquitto_sub") or "mosquitto_sub",
        "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-c", "-i", "bench-ceiling",
        "-t", "lingtan/v1/+/+/telemetry",
    ]  # fmt: skip
    # register the persistent session (QoS 1, clean session off) before queueing
    subprocess.run([*args, "-W", "1"], stdout=subprocess.DEVNULL, check=False)
    asyncio.run(_publish_only(broker.url, messages))
    started = time.perf_counter()
    subprocess.run([*args, "-C", str(len(messages))], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


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


def start_collector(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lingtan", "collect"],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_connected(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    while metric(port, "lingtan_collector_mqtt_connected") != 1.0:
        if proc.poll() is not None:
            raise RuntimeError(f"collector exited: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def count_readings(influx: InfluxServer) -> int:
    rows = influx.points('SELECT count("energy_import_kwh") FROM reading')
    return int(rows[0]["count"]) if rows else 0


def collector_envs(env: dict[str, str], n: int) -> list[dict[str, str]]:
    """One environment per collector; several share the load through an MQTT shared group."""
    if n == 1:
        return [env]
    return [
        {
            **env,
            "LINGTAN_SHARE_GROUP": "bench",
            "LINGTAN_CLIENT_ID": f"bench-collector-{i}",
            "LINGTAN_METRICS_PORT": str(free_port()),
            "LINGTAN_DATA_DIR": f"{env['LINGTAN_DATA_DIR']}-{i}",
        }
        for i in range(n)
    ]


def collector_drain(
    broker: MosquittoServer,
    influx: InfluxServer,
    messages: list[tuple[str, bytes]],
    readings: int,
    envs: list[dict[str, str]],
    workdir: Path,
) -> float:
    """Seconds for `lingtan collect` (one or several processes) to drain the backlog."""
    ports = [int(e["LINGTAN_METRICS_PORT"]) for e in envs]
    logs = [workdir / f"collector-{i}.log" for i in range(len(envs))]
    # first start registers the collectors' persistent sessions
    procs = [start_collector(e, log) for e, log in zip(envs, logs, strict=True)]
    for port, proc, log in zip(ports, procs, logs, strict=True):
        wait_connected(port, proc, log)
    for proc in procs:
        proc.terminate()
        proc.wait()
    asyncio.run(_publish_only(broker.url, messages))
    started = time.perf_counter()
    procs = [start_collector(e, log) for e, log in zip(envs, logs, strict=True)]
    last_print = started

    def stored() -> float:
        return sum(max(0.0, metric(p, "lingtan_collector_readings_total")) for p in ports)

    try:
        while stored() < readings:
            time.sleep(0.02)
            for proc, log in zip(procs, logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"collector exited: {log.read_text()[-2000:]}")
            now = time.perf_counter()
            if now - last_print > 2:
                print(f"  … {stored():,.0f} / {readings:,} readings stored", file=sys.stderr)
                last_print = now
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    stored = count_readings(influx)
    if stored != readings:
        raise RuntimeError(f"stored {stored} readings, expected {readings}")
    return elapsed


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
        while not await asyncio.to_thread(influx.points, q):
            await asyncio.sleep(0.002)
        if n > warmup:
            samples.append((time.perf_counter() - sent) * 1000)
        await asyncio.sleep(0.05)
    stop.set()
    await loader
    await pub.close()
    return samples


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
        t_coll = collector_drain(broker, influx.using(db), messages, readings, [env], work / name)
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
    messages = build_messages(readings, args.devices, args.per_message)
    print(
        f"broker persistence: {len(messages):,} messages of {args.per_message} reading(s) per"
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
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--per-message", type=int, default=1, help="readings per MQTT message")
    ap.add_argument(
        "--collectors", type=int, default=1, help="collector processes (MQTT shared subscription)"
    )
    ap.add_argument(
        "--format",
        default="native",
        help="comma-separated gateway formats to drain besides native JSON:"
        " sparkplug, neuron, json (docs/gateways.md)",
    )
    ap.add_argument("--no-latency", action="store_true", help="skip phase 3")
    ap.add_argument("--latency-rate", type=float, default=2000.0, help="live msgs/s in phase 3")
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument(
        "--persistence",
        action="store_true",
        help="compare the broker's persistence settings (docs/broker.md) instead",
    )
    ap.add_argument("--repeat", type=int, default=3, help="rounds of --persistence")
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
    if args.persistence:
        work = Path(tempfile.mkdtemp(prefix="lingtan-bench-"))
        (work / "parks.yaml").write_text(parks_yaml(args.devices))
        try:
            persistence_main(args, readings, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    messages = build_messages(readings, args.devices, args.per_message)
    work = Path(tempfile.mkdtemp(prefix="lingtan-bench-"))
    (work / "parks.yaml").write_text(parks_yaml(args.devices))
    print(
        f"ingest benchmark: {readings:,} readings from {args.devices} devices, "
        f"{len(messages):,} messages of {args.per_message} reading(s), on {os.cpu_count()} cores"
    )
    if formats:
        rates = decode_rates(formats, min(readings, 20_000), args.devices)
        for fmt, rate in rates.items():
            print(
                f"decoder alone, {fmt:>9}: {rate:>10,.0f} readings/s"
                f"  ({rate / rates['native']:.0%} of native JSON)"
            )
    broker = MosquittoServer(work / "mosquitto")
    broker.start()
    try:
        with running_influx(work / "influxd", database="bench") as influx:
            t_ceiling = ceiling(broker, messages)
            print(
                f"broker ceiling (bare mosquitto_sub, QoS 1): "
                f"{len(messages) / t_ceiling:>10,.0f} msgs/s"
                f" = {readings / t_ceiling:>10,.0f} readings/s"
            )
            env = {
                "LINGTAN_MQTT_URL": broker.url,
                "LINGTAN_INFLUX_URL": influx.url,
                "LINGTAN_INFLUX_DB": "bench",
                "LINGTAN_PARKS": str(work / "parks.yaml"),
                "LINGTAN_DATA_DIR": str(work / "data"),
                "LINGTAN_METRICS_PORT": str(free_port()),
                "LINGTAN_CLIENT_ID": "bench-collector",
                "LINGTAN_LOG_LEVEL": "WARNING",
            }
            envs = collector_envs(env, args.collectors)
            t_coll = collector_drain(broker, influx, messages, readings, envs, work)
            ratio = t_ceiling / t_coll
            print(
                f"lingtan collect ×{args.collectors} → InfluxDB:               "
                f"{len(messages) / t_coll:>10,.0f} msgs/s"
                f" = {readings / t_coll:>10,.0f} readings/s"
            )
            print(f"ratio collector / broker ceiling: {ratio:.0%}  (target ≥ 50 %)")
            for fmt in formats:
                fmt_messages = build_format_messages(fmt, readings, args.devices)
                db = f"bench_{fmt}"
                fmt_influx = influx.using(db)
                fmt_influx.create_database(db)
                parks = work / f"parks-{fmt}.yaml"
                parks.write_text(format_parks_yaml(args.devices, fmt))
                fmt_env = {
                    **env,
                    "LINGTAN_INFLUX_DB": db,
                    "LINGTAN_PARKS": str(parks),
                    "LINGTAN_CLIENT_ID": f"bench-collector-{fmt}",
                    "LINGTAN_DATA_DIR": str(work / f"data-{fmt}"),
                }
                t_fmt = collector_drain(
                    broker,
                    fmt_influx,
                    fmt_messages,
                    readings,
                    collector_envs(fmt_env, args.collectors),
                    work,
                )
                print(
                    f"lingtan collect ×{args.collectors}, {fmt:>9} → InfluxDB:    "
                    f"{len(fmt_messages) / t_fmt:>10,.0f} msgs/s"
                    f" = {readings / t_fmt:>10,.0f} readings/s"
                    f"  ({t_coll / t_fmt:.0%} of native JSON's readings/s)"
                )
            if args.no_latency:
                return 0
            log = work / "collector-live.log"
            proc = start_collector(env, log)
            try:
                wait_connected(int(env["LINGTAN_METRICS_PORT"]), proc, log)
                samples = asyncio.run(
                    latency(broker, influx, args.latency_rate, args.latency_seconds, args.devices)
                )
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            q = statistics.quantiles(samples, n=100)
            print(
                f"publish→stored latency at {args.latency_rate:,.0f} msgs/s live load: "
                f"p50 {statistics.median(samples):.1f} ms, p99 {q[98]:.1f} ms"
                f" ({len(samples)} probes)"
            )
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
