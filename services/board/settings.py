from datetime import datetime, timezone

from pydantic import AwareDatetime, Field

from duban.settings import ServiceSettings


class BoardSettings(ServiceSettings):
    http_port: int = 8005
    schema_name: str = "board"
    # The read APIs the board renders; it forwards the signed-in user's token to each.
    tracker_url: str = "http://127.0.0.1:8002"
    metrics_url: str = "http://127.0.0.1:8003"
    notifier_url: str = "http://127.0.0.1:8004"
    upstream_timeout_s: float = Field(10.0, gt=0)
    # Send the sign-in cookie over HTTPS only: on wherever the board is served through TLS (Kubernetes ingress).
    cookie_secure: bool = False
    # Render as of this instant instead of the wall clock (drills, screenshots, tests).
    fixed_now: AwareDatetime | None = None

    def clock(self) -> datetime:
        return self.fixed_now or datetime.now(timezone.utc)
