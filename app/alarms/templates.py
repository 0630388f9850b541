"""Alarm messages in Chinese and English (pure: an alarm's fields in, text out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.registry.alarm_settings import Lang

#: rule → (zh, en) one-line description, `str.format` over the alarm's params
_TEXT: dict[str, tuple[str, str]] = {
    "device_offline": (
        "设备 {device} 已 {silent_s} 秒无数据（上报周期约 {cadence_s} 秒）",
        "device {device} silent for {silent_s} s (reports every {cadence_s} s)",
    ),
    "flagged_intervals": (
        "设备 {device} 最近一小时 {bad}/{total} 个区间数据可疑",
        "device {device}: {bad} of {total} intervals in the last hour flagged suspicious",
    ),
    "dead_letters_rising": (
        "最近 5 分钟有 {count} 条报文被拒收（死信）",
        "{count} messages rejected (dead letters) in the last 5 minutes",
    ),
    "storage_unreachable": (
        "时序数据库已 {down_s} 秒无法访问",
        "time-series store unreachable for {down_s} s",
    ),
    "collector_backlog": (
        "采集器积压 {spooled_bytes} 字节待写入（背压：{backpressured}）",
        "collector spooling {spooled_bytes} bytes (backpressure: {backpressured})",
    ),
    "green_share_low": (
        "实时绿电占比 {share_pct}% 低于目标 {target_pct}%",
        "live green share {share_pct} % below the {target_pct} % target",
    ),
    "emission_rate_high": (
        "园区排放速率 {rate} kgCO2/h 超过阈值 {limit}",
        "park emission rate {rate} kgCO2/h above {limit}",
    ),
    "carbon_intensity_high": (
        "用电碳强度 {intensity} gCO2/kWh 超过阈值 {limit}",
        "electricity carbon intensity {intensity} gCO2/kWh above {limit}",
    ),
    "projection_off_target": (
        "指标 {indicator} 年末预测 {projected} 未达目标 {target}（数据覆盖 {coverage_pct}%）",
        "{indicator}: year-end projection {projected} misses its target {target} "
        "(coverage {coverage_pct} %)",
    ),
}

_STATE: dict[str, tuple[str, str]] = {
    "firing": ("告警", "FIRING"),
    "repeat": ("告警（仍未恢复）", "STILL FIRING"),
    "resolved": ("已恢复", "RESOLVED"),
    "acknowledged": ("已确认", "ACKNOWLEDGED"),
}


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def describe(rule: str, params: Mapping[str, Any], lang: Lang) -> str:
    """The one-line description of an alarm of `rule` with `params`."""
    zh, en = _TEXT.get(rule, ("{rule}", "{rule}"))
    text = zh if lang == "zh" else en
    return text.format_map(_Missing({"rule": rule, **params}))


def title(event: str, park: str, rule: str, lang: Lang) -> str:
    """e.g. "[告警] demo · device_offline" / "[FIRING] demo · device_offline"."""
    zh, en = _STATE.get(event, (event, event.upper()))
    return f"[{zh if lang == 'zh' else en}] {park} · {rule}"
