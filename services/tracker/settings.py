from pydantic import Field

from duban.settings import ServiceSettings


class TrackerSettings(ServiceSettings):
    http_port: int = 8002
    schema_name: str = "tracker"
    consumer_group: str = "duban-tracker"
    # At most this many events per batch transaction: on a backlog, larger batches cost PostgreSQL less per
    # event (fewer statements and commits); at a steady rate batches stay small (docs/decisions/027-tracker-throughput.md).
    batch_size: int = 2000
    # Lights age with the calendar: every task is re-evaluated this often, and at midnight Asia/Shanghai.
    reevaluate_interval_s: float = Field(300.0, gt=0)
    # Open cases are checked this often for the 50 / 75 / 100 % warnings of their allowed time.
    case_warning_interval_s: float = Field(60.0, gt=0)
    # Transient failures are retried this long before the process exits without acknowledging its batch.
    retry_budget_s: float = Field(60.0, gt=0)
    # A milestone due before the plan's issue date may be reported done this many working days after it
    # before it turns red (docs/tracker.md).
    retroactive_grace_working_days: int = Field(10, ge=0)
    # A task or milestone reported done and not yet verified by the district office is not red through
    # this many working days after the report (docs/decisions/020-verification-before-closing.md).
    verification_grace_working_days: int = Field(5, ge=0)
