from pydantic import Field

from duban.settings import ServiceSettings


class MetricsSettings(ServiceSettings):
    http_port: int = 8003
    schema_name: str = "metrics"
    consumer_group: str = "duban-metrics"
    # Indicator reports are department events: read from the department topic in a group of their own.
    reports_consumer_group: str = "duban-metrics-reports"
    # 约 (approx) targets: how far from the target still counts as met, as a fraction of it.
    approx_tolerance: float = Field(0.05, gt=0, lt=1)
    # /metrics carries the periods of this many most recent years (older ones stay on the API).
    exposed_years: int = Field(2, ge=1)
    # Open cases age by the clock alone: refresh the snapshot at least this often without events.
    snapshot_max_age_s: float = Field(30.0, gt=0)
    # Consumer groups whose lag this service reports (group -> topic); default: every stream processor.
    lag_groups: dict[str, str] | None = None
    lag_poll_interval_s: float = Field(15.0, gt=0)

    def watched_groups(self) -> dict[str, str]:
        if self.lag_groups is not None:
            return self.lag_groups
        return {"duban-tracker": self.topic_dept_events, self.consumer_group: self.topic_tracker_changes,
                self.reports_consumer_group: self.topic_dept_events, "duban-notifier": self.topic_tracker_changes}
