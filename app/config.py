"""Settings: LINGTAN_* environment, overridden by `.env` / `lingtan.toml`, then CLI flags."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """Every knob of the service. Unset broker/database means the embedded default."""

    model_config = SettingsConfigDict(
        env_prefix="LINGTAN_",
        env_file=".env",
        env_file_encoding="utf-8",
        toml_file="lingtan.toml",
        extra="ignore",
    )

    mqtt_url: str | None = Field(default=None, description="e.g. mqtt://user:pass@127.0.0.1:1883")
    influx_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8086")
    influx_db: str = "lingtan"
    influx_token: SecretStr | None = None
    influx_user: str | None = None
    influx_password: SecretStr | None = None
    parks: Path = Field(default=Path("parks.yaml"), description="park registry YAML")
    data_dir: Path = Field(default=Path("data"), description="spool and embedded store")
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_host: str = "127.0.0.1"
    metrics_port: int = Field(
        default=9108, ge=0, le=65535, description="collector /metrics; 0 = off"
    )
    client_id: str = Field(default="lingtan-collector", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    collect_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="`lingtan collect` processes sharing the load (docs/performance.md)",
    )
    #: this process's number among `collect --workers` (1..N, set by the parent); 0 = alone
    collect_worker: int = Field(default=0, ge=0, le=64)
    batch_max_readings: int = Field(default=5000, gt=0)
    batch_max_wait_ms: int = Field(default=100, ge=0)
    spool_max_mb: float = Field(default=1024.0, gt=0)
    max_future_s: float = Field(default=300.0, ge=0)
    raw_retention_days: float | None = Field(
        default=None,
        gt=0,
        description="embedded store: delete raw readings older than this many days (whole UTC"
        " days, hourly, by the collector); unset = keep forever. Intervals are never deleted",
    )
    db_url: str | None = Field(default=None, description="SQLAlchemy URL of the ledger store")
    registry_poll_s: float = Field(
        default=5.0,
        gt=0,
        description="how often collect/api look for registry edits (file or other processes)",
    )
    rollup_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="how often the collector builds the day rollups of days whose data"
        " settled (docs/storage.md, 'Day rollups'); 0 = never",
    )
    bootstrap_admin_key: SecretStr | None = None
    anonymous_read: bool = Field(default=False, description="read endpoints without an API key")
    log_level: str = "INFO"
    # -- security controls (docs/security.md) --
    audit_signing_key: Path | None = Field(
        default=None,
        description="Ed25519 key that signs audit checkpoints (created 0600 on first use); "
        "default <data_dir>/audit-signing.key. Keep it off the database host's backups.",
    )
    audit_checkpoints: Path | None = Field(
        default=None,
        description="append-only JSON lines of signed chain heads; "
        "default <data_dir>/audit-checkpoints.jsonl",
    )
    audit_checkpoint_s: float = Field(
        default=60.0, ge=0, description="the API signs the head this often when it moved; 0 = off"
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="larger request bodies get 413, unread"
    )
    auth_fail_limit: int = Field(
        default=20, ge=1, description="bad API keys per client IP per window before 429"
    )
    auth_fail_window_s: float = Field(default=60.0, gt=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed to call the API from a browser (comma-separated); "
        "empty = no CORS headers at all (closed)",
    )
    api_docs: bool = Field(default=True, description="serve /docs, /redoc and /openapi.json")
    api_metrics: bool = Field(default=True, description="serve the API's /metrics")
    # -- API ranges and timings (docs/api.md §1) --
    max_balance_span: timedelta = Field(
        default=timedelta(days=3700), description="longest /balance window; larger get 400"
    )
    max_buckets: int = Field(
        default=40_000, gt=0, description="most buckets one answer may hold (15m × 1 year: 35,040)"
    )
    max_readings_span: timedelta = Field(
        default=timedelta(days=400),
        description="longest /readings window (streamed: only guards against mistakes)",
    )
    live_refresh_s: float = Field(
        default=30.0, gt=0, description="how often today's balance behind /live is recomputed"
    )
    stale_after_s: float = Field(
        default=900.0,
        gt=0,
        description="stale limit of a quantity whose cadence is not known yet "
        "(docs/live-page.md); after that, 3 cadences (at least 60 s)",
    )
    sse_heartbeat_s: float = Field(
        default=5.0, gt=0, description="SSE: send the document at least this often"
    )
    sse_poll_s: float = Field(default=0.25, gt=0, description="SSE: how often to look for a change")
    auth_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="cached auth results live this long (a revoked key stops within it)",
    )
    #: the built-in alarm engine of `lingtan api` / `lingtan up` (docs/alarms.md)
    alarms: bool = True
    smtp_url: SecretStr | None = Field(
        default=None, description="e-mail alarms: smtp://[user:pass@]host:port or smtps://"
    )
    smtp_from: str = "lingtan@localhost"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [o.strip() for o in text.split(",") if o.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI flags (init) win; then the files (.env, lingtan.toml) override the environment
        return (
            init_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
            env_settings,
            file_secret_settings,
        )

    @property
    def spool_path(self) -> Path:
        """One spool per collector process: it is a single-writer file (docs/storage.md)."""
        return self.data_dir / _per_worker("spool", ".sqlite", self.collect_worker)

    @property
    def gateway_state_path(self) -> Path:
        return self.data_dir / _per_worker("gateway-state", ".json", self.collect_worker)

    @property
    def ledger_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'lingtan.db'}"

    @property
    def audit_key_path(self) -> Path:
        return self.audit_signing_key or self.data_dir / "audit-signing.key"

    @property
    def audit_checkpoint_path(self) -> Path:
        return self.audit_checkpoints or self.data_dir / "audit-checkpoints.jsonl"


def _per_worker(stem: str, suffix: str, worker: int) -> str:
    # worker 1 keeps the single collector's file, so a spool left by one process is replayed
    return f"{stem}{suffix}" if worker <= 1 else f"{stem}-{worker}{suffix}"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and files, with non-None CLI overrides applied."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
