"""Per-park Prometheus gauges for the API's /metrics (what the shipped alerting rules use)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge

from app.alarms import rules
from app.alarms.engine import AlarmEngine, AlarmView, park_settings
from app.alarms.rules import emission_rate_kg_per_h
from app.live.state import LiveState
from app.registry.models import Park

_NS_PER_S = 1_000_000_000


class ParkGauges:
    """Filled at each scrape from the live view (nothing is kept between scrapes, so removed
    parks and devices disappear)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.green_share = Gauge(
            "lingtan_park_green_share",
            "Live physical green share of the park's consumption (0..1)",
            ["park"],
            registry=registry,
        )
        self.emission_rate = Gauge(
            "lingtan_park_emission_rate_kg_per_hour",
            "Live location-based emission rate of the park's electricity, kgCO2/h",
            ["park"],
            registry=registry,
        )
        self.intensity = Gauge(
            "lingtan_park_carbon_intensity_g_per_kwh",
            "Live location-based carbon intensity of the park's electricity, gCO2/kWh",
            ["park"],
            registry=registry,
        )
        self.last_reading_age = Gauge(
            "lingtan_device_last_reading_age_seconds",
            "Seconds since this API received the device's latest reading",
            ["park", "device"],
            registry=registry,
        )
        self.cadence = Gauge(
            "lingtan_device_cadence_seconds",
            "The device's reporting cadence (set in the registry or learned from its readings)",
            ["park", "device"],
            registry=registry,
        )
        self.threshold = Gauge(
            "lingtan_alarm_threshold",
            "The park's alarm thresholds from the registry (green_share_low: 0..1, "
            "emission_rate_high: kgCO2/h, carbon_intensity_high: gCO2/kWh, "
            "device_offline: grace in s)",
            ["park", "rule"],
            registry=registry,
        )
        self.storage_up = Gauge(
            "lingtan_api_storage_up",
            "1 when the time-series store answered the alarm engine's last ping",
            registry=registry,
        )
        self.alarms_open = Gauge(
            "lingtan_alarms_open",
            "Open (firing or acknowledged) alarms of the built-in engine, by rule",
            ["park", "rule"],
            registry=registry,
        )

    def update(
        self,
        parks: Iterable[Park],
        live: LiveState,
        now_ns: int,
        engine: AlarmEngine | None,
        view: AlarmView | None,
    ) -> None:
        for gauge in (
            self.green_share,
            self.emission_rate,
            self.intensity,
            self.last_reading_age,
            self.cadence,
            self.threshold,
            self.alarms_open,
        ):
            gauge.clear()
        if engine is not None:
            self.storage_up.set(1 if engine.storage_up else 0)
        for park in parks:
            try:
                doc = live.document(park.id)
            except KeyError:
                continue
            cfg = park_settings(park)
            if cfg.enabled:
                for rule, value in (
                    (rules.GREEN_SHARE_LOW, cfg.green_share_min),
                    (rules.EMISSION_RATE_HIGH, cfg.emission_rate_max_kg_per_h),
                    (rules.CARBON_INTENSITY_HIGH, cfg.carbon_intensity_max_g_per_kwh),
                    (rules.DEVICE_OFFLINE, cfg.offline_grace_s),
                ):
                    if value is not None:
                        self.threshold.labels(park.id, rule).set(value)
            share = doc.get("green_share_physical")
            if isinstance(share, int | float):
                self.green_share.labels(park.id).set(share)
            rate = emission_rate_kg_per_h(doc)
            if rate is not None:
                self.emission_rate.labels(park.id).set(rate)
            intensity = doc.get("carbon_intensity_location_g_per_kwh")
            if isinstance(intensity, int | float):
                self.intensity.labels(park.id).set(intensity)
            for device in park.devices:
                d = live.device(park.id, device.id)
                if d is not None:
                    age = max(0.0, (now_ns - d.received_ns) / _NS_PER_S)
                    self.last_reading_age.labels(park.id, device.id).set(age)
                if engine is not None:
                    cadence = engine.cadence(park, device.id)
                    if cadence is not None:
                        self.cadence.labels(park.id, device.id).set(cadence)
            if view is not None:
                counts: dict[str, int] = {}
                for alarm in view.of(park.id):
                    counts[alarm["rule"]] = counts.get(alarm["rule"], 0) + 1
                for rule, n in counts.items():
                    self.alarms_open.labels(park.id, rule).set(n)
