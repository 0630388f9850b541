"""The built-in alarm rules as pure functions: inputs in, breaches out (no I/O, no clock).

Each rule returns the `Breach`es that hold now; `sustained` turns "holds now" into "has held
for a window", and `transitions` compares breaches with the open alarms. docs/alarms.md
describes every rule and its default.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.registry.alarm_settings import AlarmSettings

Severity = Literal["critical", "warning", "info"]

_NS_PER_S = 1_000_000_000

# Rule names (stable: they are in the alarm log, the notifications and the docs).
DEVICE_OFFLINE = "device_offline"
FLAGGED_INTERVALS = "flagged_intervals"
DEAD_LETTERS = "dead_letters_rising"
STORAGE_UNREACHABLE = "storage_unreachable"
COLLECTOR_BACKLOG = "collector_backlog"
GREEN_SHARE_LOW = "green_share_low"
EMISSION_RATE_HIGH = "emission_rate_high"
CARBON_INTENSITY_HIGH = "carbon_intensity_high"
PROJECTION_OFF_TARGET = "projection_off_target"

RULES: tuple[str, ...] = (
    DEVICE_OFFLINE,
    FLAGGED_INTERVALS,
    DEAD_LETTERS,
    STORAGE_UNREACHABLE,
    COLLECTOR_BACKLOG,
    GREEN_SHARE_LOW,
    EMISSION_RATE_HIGH,
    CARBON_INTENSITY_HIGH,
    PROJECTION_OFF_TARGET,
)

#: interval flags that count as suspicious data (a `gap` or a `reset` alone is normal life)
SUSPICIOUS_FLAGS = frozenset({"implausible", "counter_decrease", "glitch", "conflict"})

#: gaps kept per device for its learned cadence; fewer than MIN_GAPS means "not learned yet"
MAX_GAPS = 9
MIN_GAPS = 2
#: a reading received more than this after its own timestamp is a late flush (backfill),
#: not evidence of the device's live cadence
LIVE_LAG_S = 120.0


@dataclass(frozen=True, slots=True)
class Breach:
    """A condition that holds: `rule` on `subject` (a device id, a channel, or "park")."""

    rule: str
    subject: str
    severity: Severity
    value: float | None
    threshold: float | None
    #: template parameters (numbers/strings) for the messages
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.subject)


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    """The latest reading of a device as the live view has it (epoch ns)."""

    ts_ns: int
    received_ns: int


# --- cadence ----------------------------------------------------------------------------


def learn_gap(gaps: Sequence[float], prev: DeviceSeen | None, new: DeviceSeen) -> tuple[float, ...]:
    """`gaps` (seconds, newest last) after seeing `new` following `prev`.

    Only a step between two live readings counts (both received within LIVE_LAG_S of their
    timestamps): a gateway flushing hours of buffered data says nothing of its cadence.
    """
    kept = tuple(gaps)
    if prev is None or new.ts_ns <= prev.ts_ns:
        return kept
    lag_limit = LIVE_LAG_S * _NS_PER_S
    if new.received_ns - new.ts_ns > lag_limit or prev.received_ns - prev.ts_ns > lag_limit:
        return kept
    return (*kept, (new.ts_ns - prev.ts_ns) / _NS_PER_S)[-MAX_GAPS:]


def gaps_from_history(ts_ns: Sequence[int]) -> tuple[float, ...]:
    """Steps (seconds) between a device's stored readings (timestamps oldest first): its
    cadence before the engine saw it live (after a restart, or a device that fell silent
    before two live steps were seen). Equal timestamps are skipped."""
    steps = [(b - a) / _NS_PER_S for a, b in itertools.pairwise(ts_ns) if b > a]
    return tuple(steps[-MAX_GAPS:])


def cadence_s(
    device: str, gaps: Sequence[float], settings: AlarmSettings
) -> tuple[float | None, str]:
    """(cadence in seconds, where it comes from: "set", "learned", "default" or "none")."""
    if device in settings.device_cadence_s:
        return settings.device_cadence_s[device], "set"
    if len(gaps) >= MIN_GAPS:
        return statistics.median(gaps), "learned"
    if settings.default_cadence_s is not None:
        return settings.default_cadence_s, "default"
    return None, "none"


# --- rules ------------------------------------------------------------------------------


def device_offline(
    now_ns: int,
    seen: Mapping[str, DeviceSeen | None],
    cadences: Mapping[str, float | None],
    grace_s: float,
) -> list[Breach]:
    """Devices silent (nothing received) for longer than their cadence + `grace_s`.

    Devices without a cadence, or never seen since the engine started (`None`), are left
    out: there is no reading to measure the silence from.
    """
    out: list[Breach] = []
    for device, last in seen.items():
        cadence = cadences.get(device)
        if last is None or cadence is None:
            continue
        silent_s = (now_ns - last.received_ns) / _NS_PER_S
        limit = cadence + grace_s
        if silent_s > limit:
            out.append(
                Breach(
                    DEVICE_OFFLINE,
                    device,
                    "critical",
                    round(silent_s, 1),
                    round(limit, 1),
                    {"device": device, "silent_s": round(silent_s), "cadence_s": round(cadence)},
                )
            )
    return out


def flagged_intervals(
    flags_by_device: Mapping[str, Sequence[tuple[str, ...]]], share_max: float | None
) -> list[Breach]:
    """Devices whose recent intervals carry suspicious flags (SUSPICIOUS_FLAGS) in more than
    `share_max` of them (the intervals of the last hour are passed in; None or 0: off)."""
    if not share_max:
        return []
    out: list[Breach] = []
    for device, flag_sets in flags_by_device.items():
        if not flag_sets:
            continue
        bad = sum(1 for flags in flag_sets if SUSPICIOUS_FLAGS.intersection(flags))
        share = bad / len(flag_sets)
        if share > share_max:
            out.append(
                Breach(
                    FLAGGED_INTERVALS,
                    device,
                    "warning",
                    round(share, 3),
                    share_max,
                    {"device": device, "bad": bad, "total": len(flag_sets)},
                )
            )
    return out


def dead_letters(count: int | None, limit: int | None) -> list[Breach]:
    """More than `limit` dead letters of the park in the last 5 minutes (None or 0: off)."""
    if count is None or not limit or count <= limit:
        return []
    return [Breach(DEAD_LETTERS, "park", "warning", count, limit, {"count": count})]


def storage_unreachable(down_since_ns: int | None, now_ns: int, after_s: float) -> list[Breach]:
    """The time-series store has not answered a ping since `down_since_ns` for `after_s`."""
    if down_since_ns is None:
        return []
    down_s = (now_ns - down_since_ns) / _NS_PER_S
    if down_s < after_s:
        return []
    return [
        Breach(
            STORAGE_UNREACHABLE,
            "storage",
            "critical",
            round(down_s),
            after_s,
            {"down_s": round(down_s)},
        )
    ]


def collector_backlog(spooled_bytes: int | None, backpressured: bool) -> list[Breach]:
    """The collector is spooling to disk (storage slow or down) or pushing back on MQTT."""
    if spooled_bytes is None:
        return []
    if backpressured:
        return [
            Breach(
                COLLECTOR_BACKLOG,
                "collector",
                "critical",
                spooled_bytes,
                None,
                {"spooled_bytes": spooled_bytes, "backpressured": True},
            )
        ]
    if spooled_bytes > 0:
        return [
            Breach(
                COLLECTOR_BACKLOG,
                "collector",
                "warning",
                spooled_bytes,
                0,
                {"spooled_bytes": spooled_bytes, "backpressured": False},
            )
        ]
    return []


def emission_rate_kg_per_h(live: Mapping[str, Any]) -> float | None:
    """Location-based emission rate of the park's electricity now, kgCO2/h: its load (kW)
    times the carbon intensity of that load (gCO2/kWh); grid import when no load is known."""
    intensity = live.get("carbon_intensity_location_g_per_kwh")
    load = live.get("load_kw")
    if not isinstance(load, int | float):
        load = live.get("grid_import_kw")
    if not isinstance(load, int | float) or not isinstance(intensity, int | float):
        return None
    return float(load) * float(intensity) / 1000.0


def live_thresholds(live: Mapping[str, Any], settings: AlarmSettings) -> list[Breach]:
    """Thresholds on the /live document crossed right now (see `sustained` for the window)."""
    out: list[Breach] = []
    share = live.get("green_share_physical")
    if (
        settings.green_share_min is not None
        and isinstance(share, int | float)
        and share < settings.green_share_min
    ):
        out.append(
            Breach(
                GREEN_SHARE_LOW,
                "park",
                "warning",
                round(float(share), 4),
                settings.green_share_min,
                {
                    "share_pct": round(100 * share, 1),
                    "target_pct": round(100 * settings.green_share_min, 1),
                },
            )
        )
    rate = emission_rate_kg_per_h(live)
    limit = settings.emission_rate_max_kg_per_h
    if limit is not None and rate is not None and rate > limit:
        out.append(
            Breach(
                EMISSION_RATE_HIGH,
                "park",
                "warning",
                round(rate, 2),
                limit,
                {"rate": round(rate, 1), "limit": limit},
            )
        )
    intensity = live.get("carbon_intensity_location_g_per_kwh")
    limit = settings.carbon_intensity_max_g_per_kwh
    if limit is not None and isinstance(intensity, int | float) and intensity > limit:
        out.append(
            Breach(
                CARBON_INTENSITY_HIGH,
                "park",
                "warning",
                round(float(intensity), 1),
                limit,
                {"intensity": round(float(intensity), 1), "limit": limit},
            )
        )
    return out


def projection_off_target(report: Mapping[str, Any], min_coverage: float) -> list[Breach]:
    """Evaluation indicators (the core one and the guiding ones of the year's evaluation
    report, docs/evaluation.md) whose year-end projection misses its target, once the
    report's `completeness` (0..1) is at least `min_coverage`."""
    coverage = report.get("completeness")
    if not isinstance(coverage, int | float) or coverage < min_coverage:
        return []
    out: list[Breach] = []
    for indicator in [report.get("core"), *(report.get("guiding") or [])]:
        if not isinstance(indicator, Mapping):
            continue
        projection = indicator.get("projection") or {}
        if projection.get("pass") is not False:
            continue
        name = str(indicator.get("id", "?"))
        value = projection.get("value")
        target = indicator.get("target")
        out.append(
            Breach(
                PROJECTION_OFF_TARGET,
                name,
                "warning",
                float(value) if isinstance(value, int | float) else None,
                float(target) if isinstance(target, int | float) else None,
                {
                    "indicator": name,
                    "projected": round(value, 4) if isinstance(value, int | float) else value,
                    "target": target,
                    "coverage_pct": round(100 * float(coverage), 1),
                },
            )
        )
    return out


# --- windows and transitions -------------------------------------------------------------


def sustained(
    first_seen: Mapping[tuple[str, str], int],
    breaches: Iterable[Breach],
    now_ns: int,
    window_s: float,
) -> tuple[dict[tuple[str, str], int], list[Breach]]:
    """(when each current breach started, the breaches that have held for `window_s`).

    A breach that stops holding forgets its start: the window restarts from zero.
    """
    started: dict[tuple[str, str], int] = {}
    ready: list[Breach] = []
    for b in breaches:
        t0 = first_seen.get(b.key, now_ns)
        started[b.key] = t0
        if now_ns - t0 >= window_s * _NS_PER_S:
            ready.append(b)
    return started, ready


def transitions(
    open_keys: Iterable[tuple[str, str]],
    breaches: Iterable[Breach],
    evaluated_rules: Iterable[str],
) -> tuple[list[Breach], list[tuple[str, str]]]:
    """(breaches to fire, open alarms to resolve).

    Only alarms of `evaluated_rules` resolve: a rule whose input was unavailable this round
    (say, storage down for the dead-letter count) neither fires nor clears.
    """
    open_set = set(open_keys)
    current = {b.key: b for b in breaches}
    rules = set(evaluated_rules)
    fire = [b for k, b in current.items() if k not in open_set]
    resolve = sorted(k for k in open_set if k not in current and k[0] in rules)
    return fire, resolve
