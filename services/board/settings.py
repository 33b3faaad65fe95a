from datetime import time
from pathlib import Path

from pydantic import Field

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
    # How long the board waits for one answer of a read API before it shows 502; six times this, how long a board's
    # claim on a bulletin's hand-off to the notifier keeps the other boards off it.
    upstream_timeout_s: float = Field(10.0, gt=0)
    # Send the sign-in cookie over HTTPS only: on wherever the board is served through TLS (Kubernetes ingress).
    cookie_secure: bool = False
    # Issue the weekly 督查通报 automatically (the district office may still issue any week on /bulletins).
    bulletin_schedule: bool = True
    # The ISO weekday of the automatic bulletin (1 = Monday … 7 = Sunday); a day off moves it to the last working
    # day of the week before it, else the first one after it (docs/board.md).
    bulletin_weekday: int = Field(5, ge=1, le=7)
    # The civil time (Asia/Shanghai, by the service clock) of that day at which it is issued.
    bulletin_at: time = time(16, 0)
    # How often the board looks whether the week's bulletin is due and hands issued ones to the notifier.
    bulletin_interval_s: float = Field(15.0, gt=0)
    # A file holding the board's own bearer token (role district-office), with which it issues the automatic
    # bulletin and hands every bulletin to the notifier; read each round. Unset: neither happens.
    service_token_file: Path | None = None
