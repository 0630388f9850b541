"""The alarm rules as pure functions: hand-computed inputs and answers."""

from __future__ import annotations

from app.alarms import rules
from app.alarms.rules import Breach, DeviceSeen
from app.alarms.templates import describe, title
from app.registry.alarm_settings import AlarmSettings

S = 1_000_000_000
T0 = 1_750_000_000 * S


def live(ts_s: float, lag_s: float = 0.5) -> DeviceSeen:
    return DeviceSeen(int(T0 + ts_s * S), int(T0 + (ts_s + lag_s) * S))


def test_cadence_is_learned_from_live_steps_only() -> None:
    gaps: tuple[float, ...] = ()
    gaps = rules.learn_gap(gaps, None, live(0))
    assert gaps == ()
    gaps = rules.learn_gap(gaps, live(0), live(60))
    gaps = rules.learn_gap(gaps, live(60), live(120))
    assert gaps == (60.0, 60.0)
    # a late flush (received 2 h after its timestamp) teaches nothing
    flushed = DeviceSeen(T0 + 180 * S, T0 + 7380 * S)
    assert rules.learn_gap(gaps, live(120), flushed) == gaps
    # the same reading again, or an older one, neither
    assert rules.learn_gap(gaps, live(120), live(120)) == gaps
    # only the last MAX_GAPS are kept
    many: tuple[float, ...] = ()
    for i in range(12):
        many = rules.learn_gap(many, live(10 * i), live(10 * i + 10 + i))
    assert many == tuple(float(10 + i) for i in range(3, 12))


def test_cadence_sources_in_order() -> None:
    cfg = AlarmSettings(device_cadence_s={"m1": 300.0}, default_cadence_s=900.0)
    assert rules.cadence_s("m1", (60.0, 60.0), cfg) == (300.0, "set")
    assert rules.cadence_s("m2", (60.0, 30.0, 90.0), cfg) == (60.0, "learned")
    assert rules.cadence_s("m2", (60.0,), cfg) == (900.0, "default")
    assert rules.cadence_s("m2", (60.0,), AlarmSettings()) == (None, "none")


def test_device_offline_after_cadence_plus_grace() -> None:
    now = T0 + 200 * S
    seen = {
        "quiet": DeviceSeen(T0, T0 + 94 * S),  # received 106 s ago: 60 + 45 = 105 exceeded
        "fine": DeviceSeen(T0, T0 + 96 * S),  # 104 s ago: not yet
        "never": None,
        "unknown": DeviceSeen(T0, T0),
    }
    cad: dict[str, float | None] = {"quiet": 60.0, "fine": 60.0, "never": 60.0, "unknown": None}
    out = rules.device_offline(now, seen, cad, 45.0)
    assert [(b.rule, b.subject, b.value, b.threshold) for b in out] == [
        ("device_offline", "quiet", 106.0, 105.0)
    ]
    assert out[0].params == {"device": "quiet", "silent_s": 106, "cadence_s": 60}


def test_flagged_intervals_share() -> None:
    flags = {
        "a": [("implausible",), (), ("gap",), ("counter_decrease", "gap")],  # 2/4 = 0.5
        "b": [("gap",), ("reset",), ()],  # gaps and resets are not suspicious
        "c": [],
    }
    out = rules.flagged_intervals(flags, 0.2)
    assert [(b.subject, b.value) for b in out] == [("a", 0.5)]
    assert rules.flagged_intervals(flags, 0.5) == []  # not above 0.5
    assert rules.flagged_intervals(flags, None) == []
    assert rules.flagged_intervals(flags, 0) == []


def test_dead_letters_storage_and_backlog() -> None:
    assert rules.dead_letters(20, 20) == []
    assert rules.dead_letters(500, 0) == []  # 0: off
    assert [b.value for b in rules.dead_letters(21, 20)] == [21]
    assert rules.storage_unreachable(None, T0, 60) == []
    assert rules.storage_unreachable(T0 - 59 * S, T0, 60) == []
    assert [b.value for b in rules.storage_unreachable(T0 - 61 * S, T0, 60)] == [61]
    assert rules.collector_backlog(None, False) == []
    assert rules.collector_backlog(0, False) == []
    assert [b.severity for b in rules.collector_backlog(4096, False)] == ["warning"]
    assert [b.severity for b in rules.collector_backlog(4096, True)] == ["critical"]


def test_live_thresholds() -> None:
    cfg = AlarmSettings(
        green_share_min=0.5, emission_rate_max_kg_per_h=400.0, carbon_intensity_max_g_per_kwh=500
    )
    doc = {
        "green_share_physical": 0.3,
        "load_kw": 1000.0,
        "grid_import_kw": 700.0,
        "carbon_intensity_location_g_per_kwh": 550.0,
    }
    out = {b.rule: b.value for b in rules.live_thresholds(doc, cfg)}
    # 1000 kW × 550 g/kWh = 550 kg/h
    assert out == {
        "green_share_low": 0.3,
        "emission_rate_high": 550.0,
        "carbon_intensity_high": 550.0,
    }
    calm = {
        **doc,
        "green_share_physical": 0.6,
        "load_kw": 500.0,
        "carbon_intensity_location_g_per_kwh": 480.0,
    }
    assert rules.live_thresholds(calm, cfg) == []  # 500 × 480 / 1000 = 240 kg/h
    assert rules.live_thresholds(doc, AlarmSettings()) == []  # thresholds off by default
    assert (
        rules.emission_rate_kg_per_h(
            {"grid_import_kw": 100.0, "carbon_intensity_location_g_per_kwh": 600.0}
        )
        == 60.0
    )
    assert rules.emission_rate_kg_per_h({}) is None


def test_sustained_window_restarts_when_the_breach_stops() -> None:
    b = Breach("green_share_low", "park", "warning", 0.3, 0.5)
    started, ready = rules.sustained({}, [b], T0, 600)
    assert started == {b.key: T0} and ready == []
    started, ready = rules.sustained(started, [b], T0 + 599 * S, 600)
    assert ready == []
    started, ready = rules.sustained(started, [b], T0 + 600 * S, 600)
    assert ready == [b]
    started, ready = rules.sustained(started, [], T0 + 601 * S, 600)
    assert started == {}
    started, ready = rules.sustained(started, [b], T0 + 700 * S, 600)
    assert started == {b.key: T0 + 700 * S} and ready == []


def test_transitions() -> None:
    a = Breach("device_offline", "m1", "critical", 1, 1)
    c = Breach("device_offline", "m3", "critical", 1, 1)
    open_keys = [
        ("device_offline", "m1"),
        ("device_offline", "m2"),
        ("dead_letters_rising", "park"),
    ]
    fire, resolve = rules.transitions(open_keys, [a, c], ["device_offline"])
    assert fire == [c]
    # m2 cleared; the dead-letter alarm was not evaluated this round, so it stays open
    assert resolve == [("device_offline", "m2")]


def test_projection_needs_coverage_and_a_missed_target() -> None:
    report = {
        "completeness": 0.4,
        "core": {"id": "core", "target": 0.2, "projection": {"value": 0.31, "pass": False}},
        "guiding": [
            {
                "id": "clean_energy_share",
                "target": 0.9,
                "projection": {"value": 0.95, "pass": True},
            },
            {"id": "green_share", "target": 0.5, "projection": {"value": None, "pass": None}},
        ],
    }
    out = rules.projection_off_target(report, 0.25)
    assert [(b.subject, b.value, b.threshold) for b in out] == [("core", 0.31, 0.2)]
    assert rules.projection_off_target(report, 0.5) == []
    assert rules.projection_off_target({**report, "completeness": None}, 0.25) == []


def test_messages_in_both_languages() -> None:
    params = {"device": "m1", "silent_s": 106, "cadence_s": 60}
    assert (
        describe("device_offline", params, "en")
        == "device m1 silent for 106 s (reports every 60 s)"
    )
    assert describe("device_offline", params, "zh") == "设备 m1 已 106 秒无数据（上报周期约 60 秒）"
    assert describe("device_offline", {}, "en") == "device ? silent for ? s (reports every ? s)"
    assert title("resolved", "demo", "device_offline", "zh") == "[已恢复] demo · device_offline"
    assert title("firing", "demo", "device_offline", "en") == "[FIRING] demo · device_offline"


def test_settings_in_the_registry_survive_storage() -> None:
    """The registry is stored without nulls (app/ledgers/registry_store.py): every setting,
    including a default-on rule switched off, must come back the same."""
    from app.registry import parse_registry
    from app.registry.models import Registry

    reg = parse_registry(
        """
parks:
  - id: p1
    devices: [{id: m1, role: grid}]
    alarms:
      offline_grace_s: 30
      device_cadence_s: {m1: 900}
      flagged_interval_share: 0
      green_share_min: 0.6
      channels:
        - {kind: wecom, url: "http://127.0.0.1:1/robot", lang: en, rules: [device_offline]}
        - {kind: email, to: [ops@example.com]}
"""
    )
    stored = reg.model_dump(mode="json", exclude_none=True)
    back = Registry.model_validate(stored)
    assert back == reg
    cfg = back.parks[0].alarms
    assert cfg is not None
    assert (cfg.flagged_interval_share, cfg.dead_letters_per_5min) == (0, 20)
    assert cfg.channels[1].lang == "zh"
    assert Registry.model_validate({"parks": [{"id": "p2"}]}).parks[0].alarms is None


def test_channels_need_a_target() -> None:
    import pytest
    from pydantic import ValidationError

    from app.registry.alarm_settings import Channel

    with pytest.raises(ValidationError, match="needs 'to'"):
        Channel(kind="email")
    with pytest.raises(ValidationError, match="http"):
        Channel(kind="dingtalk", url="file:///etc/passwd")
    with pytest.raises(ValidationError, match="http"):
        Channel(kind="webhook")
    assert Channel(kind="feishu", url="https://open.feishu.cn/x").lang == "zh"


def test_gaps_from_stored_history() -> None:
    ts = [T0, T0 + 60 * S, T0 + 60 * S, T0 + 125 * S, T0 + 185 * S]
    assert rules.gaps_from_history(ts) == (60.0, 65.0, 60.0)
    assert rules.gaps_from_history([T0]) == ()
    many = [T0 + 10 * i * S for i in range(20)]
    assert rules.gaps_from_history(many) == (10.0,) * rules.MAX_GAPS
