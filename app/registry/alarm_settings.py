"""Per-park alarm settings kept in the registry (thresholds, windows, delivery channels).

Pure pydantic, no imports from the rest of `app`: `app.registry.models` embeds it.
Each field's default and unit is documented in docs/alarms.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ChannelKind = Literal["webhook", "dingtalk", "wecom", "feishu", "email"]
Lang = Literal["zh", "en"]


class Channel(BaseModel):
    """Where a park's alarm notifications go. `url` for webhooks/robots, `to` for e-mail
    (the SMTP server is `LINGTAN_SMTP_URL`, never kept in the registry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ChannelKind
    url: str | None = Field(default=None, max_length=2000)
    to: tuple[str, ...] = ()
    lang: Lang = "zh"
    #: rules this channel receives (empty = all)
    rules: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _target(self) -> Channel:
        if self.kind == "email":
            if not self.to:
                raise ValueError("an email channel needs 'to' (a list of addresses)")
        elif not self.url or not self.url.startswith(("http://", "https://")):
            raise ValueError(f"a {self.kind} channel needs an http(s) 'url'")
        return self


class AlarmSettings(BaseModel):
    """Thresholds of the built-in rules. Rules off by default are switched on by a value;
    those on by default (`flagged_interval_share`, `dead_letters_per_5min`) are switched off
    by 0 (the registry is stored without nulls, so null could not mean "off")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    #: a device is offline once silent for its cadence + this many seconds
    offline_grace_s: float = Field(default=45.0, ge=0)
    #: cadence (s) per device id, overriding the one learned from its readings
    device_cadence_s: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    #: cadence (s) of devices with neither a set nor a learned cadence (None: not watched)
    default_cadence_s: float | None = Field(default=None, gt=0)
    #: share of a device's intervals in the last hour flagged implausible/glitch/conflict
    #: above which it alarms (0: off)
    flagged_interval_share: float = Field(default=0.2, ge=0, le=1)
    #: dead letters of the park in the last 5 minutes above which it alarms (0: off)
    dead_letters_per_5min: int = Field(default=20, ge=0)
    #: storage (InfluxDB or embedded) not answering for this long
    storage_unreachable_s: float = Field(default=60.0, ge=0)
    #: live physical green share (0..1) below this for `window_s`
    green_share_min: float | None = Field(default=None, ge=0, le=1)
    #: live park emission rate (kgCO2/h, location based) above this for `window_s`
    emission_rate_max_kg_per_h: float | None = Field(default=None, gt=0)
    #: live carbon intensity of the park's electricity (gCO2/kWh) above this for `window_s`
    carbon_intensity_max_g_per_kwh: float | None = Field(default=None, gt=0)
    #: how long a live threshold must be crossed before its alarm fires
    window_s: float = Field(default=600.0, ge=0)
    #: year-end projection of the evaluation indicators missing their targets (daily)
    projection_check: bool = True
    #: least data coverage of the year so far before a projection is trusted
    projection_min_coverage: float = Field(default=0.25, gt=0, le=1)
    #: a still-firing, unacknowledged alarm is notified again after this long (0: never)
    repeat_s: float = Field(default=4 * 3600.0, ge=0)
    channels: tuple[Channel, ...] = ()


DEFAULT_SETTINGS = AlarmSettings()
