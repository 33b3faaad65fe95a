from datetime import datetime, timezone

from pydantic import AwareDatetime, Field

from duban.settings import ServiceSettings


class BoardSettings(ServiceSettings):
    http_port: int = 8005
    schema_name: str = "board"
    # The tracker's read API (tasks, milestones, reports, extensions); the board forwards the user's token to it.
    tracker_url: str = "http://127.0.0.1:8002"
    # The metrics service's read API (indicators and the cases behind them), asked with the user's token.
    metrics_url: str = "http://127.0.0.1:8003"
    # The notifier's read API (escalations), asked with the user's token.
    notifier_url: str = "http://127.0.0.1:8004"
    # How long the board waits for one answer of a read API before it shows 502.
    upstream_timeout_s: float = Field(10.0, gt=0)
    # Send the sign-in cookie over HTTPS only: on wherever the board is served through TLS (Kubernetes ingress).
    cookie_secure: bool = False
    # Evaluate lights as of this instant instead of the wall clock (drills, what-if, tests): the board dates its
    # scorecard, exports and bulletins by it.
    fixed_now: AwareDatetime | None = None

    def clock(self) -> datetime:
        return self.fixed_now or datetime.now(timezone.utc)
