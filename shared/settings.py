"""Settings for every service, from environment variables (pydantic-settings).

Each service reads ``COUNTYPOOL_<SERVICE>_<FIELD>`` first; deployment-wide values (``DATABASE_URL``,
``KAFKA_BOOTSTRAP_SERVERS``, ``COUNTYPOOL_DATA_DIR``) fill what a service does not set itself.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_PORTS = {"ledger": 8001, "quota": 8002, "settlement": 8003, "assessment": 8004}
# Numbers are checked at start (a batch of 0 published nothing, a negative pause spun a loop): the error names the
# setting. Port 0: any free port (tests).
Port = Annotated[NonNegativeInt, Field(le=65535)]


class SettingsError(ValueError):
    """A deployment-wide setting that cannot be used; the message names it and never repeats a secret."""


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    service: str
    host: str = "127.0.0.1"
    port: Port = 0
    database_url: str | None = None
    data_dir: Path = Field(default_factory=lambda: Path(os.environ.get("COUNTYPOOL_DATA_DIR", ".data")))
    kafka_bootstrap_servers: str = Field(
        default_factory=lambda: os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    consumer_enabled: bool = True
    relay_enabled: bool = True
    # bench/relay_throughput.py on PostgreSQL: 2,000 a round publishes ~3x as fast as 500 (one Kafka flush
    # and one commit per round), and a round only takes what is there
    relay_batch_size: PositiveInt = 2000
    relay_idle_seconds: PositiveFloat = 0.05  # 0 would poll the outbox without a pause
    consumer_max_records: PositiveInt = 500
    consumer_max_attempts: PositiveInt = 5  # 0 tried a message no time: neither applied nor dead-lettered
    # on intake and command topics (outsiders publish there); other services' events are taken up to
    # shared.outbox.MAX_EVENT_BYTES, the most their outboxes write
    consumer_max_message_bytes: PositiveInt = 256 * 1024
    # Topics the service creates when they are missing (production creates them up front: see deploy/k8s).
    topic_partitions: PositiveInt = 3
    topic_replication_factor: PositiveInt = 1
    log_level: str = "INFO"  # DEBUG, INFO, WARNING, ERROR or CRITICAL, any case
    log_json: bool = True
    # Token file (JSON) and/or JWT secret: see shared/auth.py.
    auth_tokens_file: Path | None = Field(
        default_factory=lambda: Path(p) if (p := os.environ.get("COUNTYPOOL_AUTH_TOKENS_FILE")) else None
    )
    auth_jwt_secret: str | None = Field(default_factory=lambda: os.environ.get("COUNTYPOOL_AUTH_JWT_SECRET"))
    # When set, a JWT must name this audience (``aud``) / this issuer (``iss``): a token minted with the same
    # secret for another system of the county is then refused here.
    auth_jwt_audience: str | None = Field(default_factory=lambda: os.environ.get("COUNTYPOOL_AUTH_JWT_AUDIENCE") or None)
    auth_jwt_issuer: str | None = Field(default_factory=lambda: os.environ.get("COUNTYPOOL_AUTH_JWT_ISSUER") or None)
    # Intake messages signed by their source's API key (shared/auth.py): off | verify | require
    intake_signatures: str = Field(default_factory=lambda: os.environ.get("COUNTYPOOL_INTAKE_SIGNATURES") or "off")

    # The consumer group (COUNTYPOOL_<SERVICE>_GROUP_ID); default countypool-<service>. A demo, a benchmark
    # or a second instance for another county uses its own.
    group_id: str | None = None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        level = v.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"{v!r} is not DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def consumer_group(self) -> str:
        return self.group_id or f"countypool-{self.service}"

    def resolved_database_url(self) -> str:
        """Per-service URL, else DATABASE_URL with ``_<service>`` appended to its database name, else a
        SQLite file under the data directory (the embedded default)."""
        if self.database_url:
            return self.database_url
        shared = os.environ.get("DATABASE_URL")
        if shared:
            try:
                url = make_url(shared)
            except ValueError:  # SQLAlchemy's message would repeat the URL, password and all
                raise SettingsError("DATABASE_URL cannot be read as a database URL (a password holding @ : / or % "
                                 "must be percent-encoded, e.g. %40 for @)") from None
            if url.get_backend_name() == "sqlite":
                return shared
            # a URL naming no database names the server: each service's is countypool_<service> on it
            return url.set(database=f"{url.database or 'countypool'}_{self.service}").render_as_string(
                hide_password=False)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / f'{self.service}.sqlite3').resolve()}"


def load_settings(service: str, cls: type[ServiceSettings] = ServiceSettings, **overrides) -> ServiceSettings:
    """Build settings for ``service`` with the env prefix ``COUNTYPOOL_<SERVICE>_``."""

    class _Scoped(cls):  # type: ignore[valid-type, misc]
        model_config = SettingsConfigDict(env_prefix=f"COUNTYPOOL_{service.upper()}_", extra="ignore")
        # read like every other setting: a bad COUNTYPOOL_<SERVICE>_PORT is refused naming the setting
        port: Port = DEFAULT_PORTS.get(service, 8000)

    return _Scoped(service=service, **overrides)
