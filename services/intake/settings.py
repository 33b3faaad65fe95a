from pydantic import Field, model_validator

from duban.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    http_port: int = 8001
    schema_name: str = "intake"
    # The CloudEvents batch a department may post at once (docs/intake.md promises at most 500).
    max_batch_events: int = Field(500, ge=1, le=500)
    # Bodies are cut off while they are read: 500 events of the largest kind fit in 5 MiB.
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    # Token bucket per department and per process: events per second, and how many may come at once.
    rate_limit_per_s: float = Field(50.0, gt=0)
    rate_limit_burst: int = Field(1000, ge=1)
    # The broker must acknowledge a request's events within this time, else 503.
    publish_timeout_s: float = Field(5.0, gt=0)
    # What a 503 tells the department to wait before it resends.
    retry_after_s: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _a_full_batch_can_pass(self) -> "IntakeSettings":
        if self.rate_limit_burst < self.max_batch_events:
            raise ValueError("rate_limit_burst must hold at least max_batch_events, or a full batch is never let through")
        return self
