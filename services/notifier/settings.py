from datetime import time
from pathlib import Path

from pydantic import Field, SecretStr

from duban.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    http_port: int = 8004
    schema_name: str = "notifier"
    consumer_group: str = "duban-notifier"

    # The ladder (DESIGN §5), in working days.
    escalation_red_days_to_top: int = Field(5, ge=1)
    escalation_unacknowledged_days_to_top: int = Field(3, ge=1)
    escalation_repeat_every_days: int = Field(5, ge=1)
    # An acknowledgement pauses escalation until a time at most this many working days ahead.
    acknowledge_max_days: int = Field(10, ge=1)
    # The department the top level (督办) addresses.
    top_department: str = "district-office"

    # Who receives what: department code -> channel addresses (docs/notifier.md). None: nobody yet.
    notifier_routes: Path | None = None
    # Send at any hour instead of office hours only: the local demo (`duban run`), whose notices a newcomer
    # should see at once, at whatever hour of the real or virtual day.
    deliver_outside_office_hours: bool = False
    # Digest routes get their digest at this civil time (Asia/Shanghai) of each working day; lead
    # departments get the weekly one on the week's first working day.
    digest_at: time = time(8, 30)
    weekly_digest: bool = True
    # How often the scheduler looks for due escalations and deliveries.
    scheduler_interval_s: float = Field(15.0, gt=0)
    # Robots accept this many messages per rolling minute (WeCom and DingTalk: 20).
    robot_messages_per_minute: int = Field(20, ge=1)
    # A delivery is dead after this many failed attempts (a send whose sender never came back counts); the waits
    # between them double up to the maximum.
    delivery_max_attempts: int = Field(6, ge=1)
    delivery_retry_initial_s: float = Field(30.0, gt=0)
    delivery_retry_max_s: float = Field(1800.0, gt=0)
    # Bounds each HTTP and SMTP step and a whole send; a claimed notice is left to its sender for twice this.
    delivery_timeout_s: float = Field(10.0, gt=0)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_sender: str = "duban@gulou.gov.cn"
