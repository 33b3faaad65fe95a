"""Configuration shared by every service, read from `DUBAN_*` environment variables.

Each service subclasses `ServiceSettings` for its own port and knobs, so one settings object
describes one process (see docs/runbooks/configuration.md for the full list)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from duban.clock import ClockSettings
from duban.events.timing import TimeWindow


class ServiceSettings(ClockSettings):
    """`clock()` (from ClockSettings) is now for every business purpose: see duban/clock.py."""

    model_config = SettingsConfigDict(env_prefix="DUBAN_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/duban"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Tansu (the local broker) has no idempotent producer; production Kafka does.
    kafka_enable_idempotence: bool = False
    # A consumer waits long to join a group on Tansu with the default timeouts; the launcher lowers them locally.
    kafka_rebalance_timeout_s: float = 60.0
    kafka_session_timeout_s: float = 30.0
    # How long the broker may hold a consumer's fetch that finds no data. Kafka answers as soon as data
    # arrives, so its default costs no latency; Tansu answers only at the limit, so the launcher lowers
    # it when it starts Tansu (docs/decisions/024-consumer-runtime-speed.md).
    kafka_fetch_max_wait_ms: int = Field(500, ge=0)
    # Allocations between two collections of the youngest generation in a stream processor (Python's
    # default is 700); fewer collections of a batch's short-lived objects (decision 024).
    gc_gen0_threshold: int = Field(10_000, ge=1)
    # How clients reach the broker: PLAINTEXT locally (Tansu has no SASL nor TLS); on Strimzi the
    # listener is SASL_SSL with SCRAM-SHA-512, a user per service and the cluster CA (docs/deploy.md).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # PEM file of the CA that signed the brokers' certificates; empty: the system's trusted CAs.
    kafka_ssl_cafile: str = ""
    topic_dept_events: str = "duban.dept-events"
    topic_tracker_changes: str = "duban.tracker-changes"
    topic_partitions: int = 12
    topic_replication: int = 1
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True
    # Liveness fails when the service's main loop has not ticked for this long.
    liveness_stale_after_s: float = 60.0
    data_dir: str = ".run"
    # Sane time (duban/events/timing.py): event instants may run this far ahead of the clock, and
    # none may lie before the floor; intake refuses the others with 400, consumers dead-letter them.
    event_time_max_skew_s: float = Field(300.0, ge=0)
    event_time_floor: date = date(2000, 1, 1)

    def time_window(self) -> TimeWindow:
        # The window follows the service's clock: on a virtual clock, events carry virtual instants.
        # It asks for every event, so it keeps one Clock rather than building one per call (`self.clock`).
        return TimeWindow(floor=self.event_time_floor, max_skew=timedelta(seconds=self.event_time_max_skew_s),
                          clock=self.time_source.now)
    # Bearer tokens (duban/auth.py): the identity provider's JWKS or one public key file; a service with neither
    # refuses to start. `duban run` sets the key file to the key pair it keeps under the data dir.
    auth_jwks_url: str | None = None
    auth_public_key_file: str | None = None
    auth_issuer: str = "duban-local"
    auth_audience: str = "duban"
    auth_role_claim: str = "role"
    auth_department_claim: str = "department"

    @property
    def dead_letter_suffix(self) -> str:
        return ".dlq"
