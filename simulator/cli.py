# Long module: the simulator's one command: its option table and run loop, nothing else.
"""The `lingtan simulate` subcommand: arguments, defaults, and the run that ties it together."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from app.config import load_settings
from app.registry import Registry, RegistryError, load_registry
from simulator.formats import FORMATS, Transcoder, with_sources
from simulator.gateway import SimStats
from simulator.generator import check_step, simulate_parks, to_ns
from simulator.options import GatewayOptions
from simulator.publish import JsonLinesSink, Publisher, publish_messages
from simulator.registry_ext import add_synthetic_loads, dump_registry
from simulator.truth import NS, TruthAccumulator

#: The collector rejects readings stamped more than this far ahead of its clock
#: (docs/gateway-contract.md).
COLLECTOR_FUTURE_LIMIT_S = 300

DESCRIPTION = """\
Simulate the parks of a registry and publish their meters' telemetry over MQTT exactly as
real gateways do (topic lingtan/v1/{park}/{device}/telemetry, docs/gateway-contract.md JSON, QoS 1).
Physics: clear-sky PV with clouds, Weibull wind through a power curve, factory/office/EV
loads, storage dispatch, heat pumps/boilers/district heat driven by outdoor temperature,
and a grid meter that closes the park's energy balance at every step. Deterministic for a
given --seed. --truth writes the energy each meter registered per 15-min interval, so the
pipeline's figures can be checked against what was simulated.
"""

EPILOG = """\
examples:
  # one day of the demo park in real time, to the broker in LINGTAN_MQTT_URL
  lingtan simulate --parks examples/parks.yaml --duration 1d

  # a winter week as fast as the broker takes it (ends now), with ground truth
  lingtan simulate --parks examples/parks.yaml --duration 7d --speed max --truth truth.csv

  # 1000 extra load meters at 10 s resolution, 60x real time; give the collector the
  # written registry, or it dead-letters the synthetic devices as unknown
  lingtan simulate --parks examples/parks.yaml --devices 1000 --step 10s --speed 60 \\
      --registry-out /tmp/parks.sim.yaml

  # gateway faults: outages with late array flushes, resets, replaced meters, junk, skew
  lingtan simulate --parks examples/parks.yaml --duration 2d --speed max --faults --seed 7

  # the same meters behind a Sparkplug B edge node (or --format neuron / json);
  # the collector reads them with the written registry's sources
  lingtan simulate --parks examples/parks.yaml --format sparkplug --registry-out /tmp/spb.yaml

  # no broker: print the messages as JSON lines
  lingtan simulate --parks examples/parks.yaml --duration 1h --speed max --out -

--start defaults to now with --speed 1 (live), and otherwise to now minus --duration, so
accelerated runs never stamp readings in the future (the collector rejects readings more
than 300 s ahead of its clock).
"""

_DUR = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s|ms)?", re.IGNORECASE)
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}


def parse_duration_s(text: str) -> float:
    """'90', '90s', '15m', '2h', '7d', '1h30m' → seconds."""
    text = text.strip().lower()
    pos, total = 0, 0.0
    for m in _DUR.finditer(text):
        if m.start() != pos or not m.group(0):
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 2h, 7d")
    return total


def parse_speed(text: str) -> float | None:
    if text.lower() in {"max", "inf", "0"}:
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed {text!r}: a factor like 60, or max") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("speed must be > 0 (or max)")
    return value


def parse_start(text: str, tz: ZoneInfo) -> datetime:
    """'now', RFC 3339 with offset, or a naive date/time read in the park's zone."""
    if text == "now":
        return datetime.now(tz)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--start {text!r}: use RFC 3339, a date (2026-01-15) or now") from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=tz)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `simulate` to the `lingtan` command line."""
    p = subparsers.add_parser(
        "simulate",
        help="realistic park simulator publishing MQTT telemetry like real gateways",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("what to simulate")
    src.add_argument("--parks", type=Path, help="park registry YAML (LINGTAN_PARKS)")
    src.add_argument(
        "--park",
        action="append",
        metavar="ID",
        help="park id to simulate (repeatable; default: every park)",
    )
    src.add_argument(
        "--devices",
        type=int,
        default=0,
        metavar="N",
        help="add N synthetic load meters to each park (default 0)",
    )
    src.add_argument(
        "--registry-out",
        type=Path,
        metavar="PATH",
        help="write the registry incl. synthetic meters here, for the collector",
    )
    src.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    src.add_argument(
        "--format",
        dest="gateway_format",
        choices=FORMATS,
        default="native",
        help="what the gateways speak: native JSON (default), sparkplug (Sparkplug B),"
        " neuron (EMQ Neuron uploads) or json (vendor records); --registry-out then writes"
        " each device's matching source for the collector (docs/gateways.md)",
    )

    tm = p.add_argument_group("time")
    tm.add_argument("--start", help="first reading: now, 2026-01-15, or RFC 3339 with offset")
    tm.add_argument(
        "--duration",
        type=parse_duration_s,
        default=3600.0,
        help="simulated span: 90s, 15m, 2h, 7d (default 1h)",
    )
    res = tm.add_mutually_exclusive_group()
    res.add_argument(
        "--step",
        type=parse_duration_s,
        default=None,
        help="simulated time between readings of a device (default 60s;"
        " must divide the 15-min interval)",
    )
    res.add_argument(
        "--rate",
        type=float,
        metavar="HZ",
        help="readings per device per simulated second (1 = every second)",
    )
    tm.add_argument(
        "--speed",
        type=parse_speed,
        default=1.0,
        help="simulated time runs X× the wall clock; max = as fast as the"
        " broker acknowledges (default 1 = live)",
    )

    gw = p.add_argument_group("gateway behaviour (all seeded, off unless set)")
    gw.add_argument(
        "--faults",
        action="store_true",
        help="a realistic mix of every fault below; explicit flags override it",
    )
    gw.add_argument("--batch", type=int, help="readings per message (JSON arrays when > 1)")
    gw.add_argument("--offline-per-day", type=float, help="gateway outages per day (buffered)")
    gw.add_argument("--offline-max-min", type=float, help="longest outage, minutes (60)")
    gw.add_argument("--resets-per-day", type=float, help='meter resets with "reset": true')
    gw.add_argument(
        "--replacements-per-day",
        type=float,
        help="silently replaced meters (counter back near zero, no flag)",
    )
    gw.add_argument(
        "--malformed-rate",
        type=float,
        help="probability per message of also sending a malformed payload",
    )
    gw.add_argument("--skew-max-s", type=float, help="clock skew of 20 %% of devices, ±seconds")
    gw.add_argument(
        "--glitches-per-day",
        type=float,
        help="bad readings per device per day (0, wrong register, x1000, same ts again)",
    )

    out = p.add_argument_group("output")
    out.add_argument("--mqtt-url", help="broker, e.g. mqtt://user:pass@127.0.0.1:1883")
    out.add_argument("--client-id", dest="sim_client_id", help="MQTT client id of the simulator")
    out.add_argument("--qos", type=int, choices=(0, 1), default=1, help="MQTT QoS (default 1)")
    out.add_argument(
        "--max-inflight",
        type=int,
        default=1000,
        help="unacknowledged QoS 1 messages before waiting (default 1000)",
    )
    out.add_argument(
        "--out",
        metavar="PATH",
        help="write JSON lines to PATH ('-' = stdout) instead of publishing",
    )
    out.add_argument(
        "--truth",
        type=Path,
        metavar="PATH",
        help="write the ground truth (per-interval energy per meter); .json or .csv",
    )
    out.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def gateway_options(args: argparse.Namespace) -> GatewayOptions:
    opt = GatewayOptions.faulty() if args.faults else GatewayOptions()
    names = (
        "batch",
        "offline_per_day",
        "offline_max_min",
        "resets_per_day",
        "replacements_per_day",
        "malformed_rate",
        "skew_max_s",
        "glitches_per_day",
    )
    updates = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return replace(opt, **updates)


def step_seconds(args: argparse.Namespace) -> int:
    step: float
    if args.rate is not None:
        if args.rate <= 0:
            raise ValueError("--rate must be > 0")
        step = 1.0 / args.rate
    else:
        step = args.step if args.step is not None else 60.0
    if step < 1 or abs(step - round(step)) > 1e-9:
        raise ValueError(f"a step of {step:g} s is not a whole number of seconds ≥ 1")
    return round(step)


async def run(args: argparse.Namespace) -> int:
    """Entry point of `lingtan simulate`; returns the process exit code."""
    err = sys.stderr
    try:
        settings = load_settings(mqtt_url=args.mqtt_url, parks=args.parks)
        registry: Registry = load_registry(settings.parks)
        park_ids = args.park or [p.id for p in registry.parks]
        unknown = [p for p in park_ids if registry.park(p) is None]
        if unknown or not park_ids:
            raise ValueError(f"park(s) {unknown or '(none)'} not in {settings.parks}")
        registry = add_synthetic_loads(registry, args.devices, park_ids, seed=args.seed)
        registry = with_sources(registry, args.gateway_format, park_ids)
        step_s = step_seconds(args)
        first = registry.park(park_ids[0])
        assert first is not None
        for pid in park_ids:
            park = registry.park(pid)
            assert park is not None
            check_step(step_s, park.interval_minutes)
        options = gateway_options(args)
        duration_s: float = args.duration
        speed: float | None = args.speed
        if args.start:
            start = parse_start(args.start, first.tz)
        elif speed == 1.0:
            start = datetime.now(first.tz)
        else:
            start = datetime.now(first.tz) - timedelta(seconds=duration_s)
    except (RegistryError, ValueError, OSError) as exc:
        print(f"lingtan simulate: {exc}", file=err)
        return 2

    if args.registry_out:
        dump_registry(registry, args.registry_out)
    elif args.devices or args.gateway_format != "native":
        print(
            "lingtan simulate: note: the collector must know the synthetic meters and"
            " gateway sources; pass --registry-out and give that file to the collector",
            file=err,
        )
    start_ns = to_ns(start)
    end_ns = start_ns + int(duration_s * NS)
    # with speed X the last reading goes out after duration/X of wall time
    wall_end_ns = time.time_ns() + int(duration_s / (speed or float("inf")) * NS)
    if end_ns > wall_end_ns + COLLECTOR_FUTURE_LIMIT_S * NS:
        print(
            "lingtan simulate: warning: readings will be stamped ahead of the wall clock;"
            f" the collector rejects those more than {COLLECTOR_FUTURE_LIMIT_S} s in the"
            " future (leave --start unset to end the run at now)",
            file=err,
        )

    truth = TruthAccumulator() if args.truth else None
    stats = SimStats()
    messages = Transcoder(args.gateway_format, registry).run(
        simulate_parks(
            registry,
            park_ids,
            start,
            duration_s,
            step_s,
            args.seed,
            options,
            truth=truth,
            stats=stats,
        )
    )
    publisher: Publisher
    sink_file = None
    if args.out:
        sink_file = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
        publisher = JsonLinesSink(sink_file)
    else:
        from collectors.mqtt import GmqttPublisher, MqttEndpoint

        url = settings.mqtt_url or "mqtt://127.0.0.1:1883"
        endpoint = MqttEndpoint.parse(url)
        publisher = GmqttPublisher(
            endpoint, client_id=args.sim_client_id, max_inflight=args.max_inflight
        )
        if not args.quiet:
            print(f"lingtan simulate: publishing to {endpoint.redacted()}", file=err)
    code = 0
    try:
        await publisher.connect()
        report = await publish_messages(
            messages,
            publisher,
            speed=speed,
            qos=args.qos,
            progress_every_s=None if args.quiet else 1.0,
            tz=first.tz,
            start_ns=start_ns,
            end_ns=end_ns,
        )
        if not args.quiet:
            print(
                f"lingtan simulate: done: {report.messages} messages, {report.readings}"
                f" readings in {report.wall_s:.1f} s ({report.rate_msgs_s:,.0f} msg/s);"
                f" malformed {stats.malformed_total}, resets {stats.resets}, replaced"
                f" {stats.replacements}, outages {stats.outages},"
                f" skewed devices {len(stats.skewed_devices)},"
                f" glitches {sum(stats.glitches.values())}",
                file=err,
            )
    except BrokenPipeError:
        pass  # `--out - | head`: the reader has seen enough
    except (OSError, TimeoutError) as exc:
        print(f"lingtan simulate: {exc}", file=err)
        code = 1
    finally:
        with contextlib.suppress(BrokenPipeError):
            await publisher.close()
        if sink_file is not None and sink_file is not sys.stdout:
            sink_file.close()
        if truth is not None:
            truth.write(args.truth)
            if not args.quiet:
                print(f"lingtan simulate: ground truth written to {args.truth}", file=err)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone `python -m simulator` (same arguments as `lingtan simulate`)."""
    import asyncio

    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    try:
        return asyncio.run(run(parser.parse_args(argv)))
    except KeyboardInterrupt:
        return 130
