"""`lingtan simulate --format`: each gateway format, read back through the collector's decoder
with the registry the simulator writes, gives exactly the readings of the native JSON."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app.registry import load_registry, parse_registry
from app.registry.models import COUNTER_QUANTITIES, INSTANT_QUANTITIES
from app.telemetry.formats import GatewayDecoder
from simulator.cli import main
from simulator.formats import Transcoder, with_sources
from simulator.generator import simulate_parks
from simulator.options import GatewayOptions
from simulator.registry_ext import add_synthetic_loads

SH = ZoneInfo("Asia/Shanghai")
NS = 10**9
REGISTRY = parse_registry(
    """
parks:
  - id: demo
    timezone: Asia/Shanghai
    devices:
      - {id: grid-main, role: grid}
      - {id: pv-1, role: pv, max_kw: 1500}
      - {id: bess-1, role: storage, capacity_kwh: 2000, max_kw: 800}
      - {id: hp-1, role: heat_pump, max_kw: 500}
      - {id: bldg-a, role: load, included_in: grid-main, max_kw: 600}
"""
)
START = datetime(2026, 2, 2, tzinfo=SH)
NOW_NS = int(START.timestamp()) * NS + 3 * 3600 * NS


def readings(fmt: str) -> tuple[set[tuple[str, int, tuple[tuple[str, float], ...]]], int]:
    base = add_synthetic_loads(REGISTRY, 45, ["demo"], seed=3)  # 50 meters: 3 Neuron groups
    registry = with_sources(base, fmt, ["demo"])
    native = simulate_parks(base, ["demo"], START, 2 * 3600, 60, 5, GatewayOptions())
    decoder = GatewayDecoder(registry)
    got: set[tuple[str, int, tuple[tuple[str, float], ...]]] = set()
    messages = 0
    for msg in Transcoder(fmt, registry).run(native):
        messages += 1
        out = decoder.decode(msg.topic, msg.payload, NOW_NS)
        assert out.deadletters == [], out.deadletters[:1]
        for r in out.readings:
            got.add((r.device, r.ts_ns, tuple(sorted(r.values.items()))))
    return got, messages


def _contract_only(
    rows: set[tuple[str, int, tuple[tuple[str, float], ...]]],
) -> set[tuple[str, int, tuple[tuple[str, float], ...]]]:
    """The formats carry the contract's quantities only (no extras such as wind speed)."""
    known = COUNTER_QUANTITIES | INSTANT_QUANTITIES
    return {(d, t, tuple((k, v) for k, v in vs if k in known)) for d, t, vs in rows}


@pytest.mark.parametrize("fmt", ["sparkplug", "neuron", "json"])
def test_each_format_reads_back_as_the_native_readings(fmt: str) -> None:
    native, native_msgs = readings("native")
    got, msgs = readings(fmt)
    assert got == _contract_only(native)
    assert len(got) == 50 * 121  # 50 meters, minutes 0..120
    if fmt == "neuron":  # 3 groups (20, 20, 10 meters) per minute instead of 50 messages
        assert msgs == 3 * 121 and native_msgs == 50 * 121
    if fmt == "json":  # one records array per park and minute
        assert msgs == 121
    if fmt == "sparkplug":  # NBIRTH, one DBIRTH and then DDATA per meter
        assert msgs == 1 + 50 * 121


def test_cli_format_writes_messages_and_the_registry_to_read_them(tmp_path: Path) -> None:
    parks = tmp_path / "parks.yaml"
    parks.write_text(
        "parks:\n  - id: demo\n    timezone: Asia/Shanghai\n    devices:\n"
        "      - {id: grid-main, role: grid}\n      - {id: pv-1, role: pv, max_kw: 1500}\n"
    )
    out, reg = tmp_path / "out.jsonl", tmp_path / "parks.sim.yaml"
    args = ["--parks", str(parks), "--duration", "10m", "--speed", "max", "--quiet"]
    code = main([*args, "--format", "sparkplug", "--out", str(out), "--registry-out", str(reg)])
    assert code == 0
    registry = load_registry(reg)
    sources = [d.source for d in registry.parks[0].devices]
    assert [(s.format, s.edge, s.device) for s in sources if s] == [
        ("sparkplug", "demo", "grid-main"),
        ("sparkplug", "demo", "pv-1"),
    ]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    topics = [line["topic"].split("/")[2] for line in lines]
    # minutes 0..10 of two meters: NBIRTH, a DBIRTH each, then DDATA
    assert topics == ["NBIRTH", "DBIRTH", "DBIRTH"] + ["DDATA"] * 20
    decoder = GatewayDecoder(registry)
    now_ns = time.time_ns()  # the run ended now
    got = [
        decoder.decode(line["topic"], base64.b64decode(line["payload_b64"]), now_ns)
        for line in lines
    ]
    assert sum(len(g.readings) for g in got) == 22
    assert not any(g.deadletters for g in got)
