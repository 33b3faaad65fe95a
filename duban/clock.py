"""One clock for every service: what "now" means for lights, escalations, case warnings, digests,
indicator periods and the event-time window (DESIGN §4, decision 026).

Real UTC time unless configured. A virtual clock has a start instant, a speed and a real epoch:

    now = start + (real now − epoch) × speed        (and `start` itself before the epoch)

Every process given the same three values computes the same virtual instant, whenever it started;
`duban run` sets them for every service it launches. Speed 0 is a fixed clock (drills, what-if, tests).

Only instants with a business meaning come from here. Token expiry, webhook and robot signature
timestamps, log timestamps, retry backoffs and Kafka/database timeouts keep the real clock: they are
checked by parties that live in real time (an identity provider, a receiving server, an operator
reading logs, a broker), and a virtual hour there would expire, refuse or stall real work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache

from pydantic import AwareDatetime, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClockConfigError(ValueError):
    """A virtual clock configured so that two processes could disagree about now."""


def _real_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Clock:
    """Real time when `start` is None; otherwise virtual time running `speed` times as fast as real
    time from `start` at the real instant `epoch`."""

    start: datetime | None = None
    speed: float = 1.0
    epoch: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("start", "epoch"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ClockConfigError(f"the clock's {name} needs a UTC offset: {value.isoformat()}")
        if self.speed < 0:
            raise ClockConfigError(f"the clock's speed must not be negative: {self.speed}")
        if self.start is not None and self.speed != 0 and self.epoch is None:
            # Without a shared epoch each process would count from its own start and disagree.
            raise ClockConfigError("a running virtual clock (DUBAN_CLOCK_START with a speed other than 0) needs"
                                   " DUBAN_CLOCK_EPOCH, the real instant at which it shows its start")

    @property
    def virtual(self) -> bool:
        return self.start is not None

    def now(self) -> datetime:
        return self.at(_real_now())

    def at(self, real: datetime) -> datetime:
        """The instant this clock shows at the real instant `real`: a function of it alone, so every
        process configured alike shows the same."""
        if self.start is None:
            return real
        if self.speed == 0 or real <= self.epoch:
            return self.start
        return self.start + (real - self.epoch) * self.speed

    def real_seconds(self, virtual_seconds: float) -> float:
        """How long real time takes to advance the clock by `virtual_seconds` (for sleeping until a
        virtual instant); a fixed clock never gets there, so it answers the wait unchanged."""
        return virtual_seconds / self.speed if self.virtual and self.speed else virtual_seconds


class ClockSettings(BaseSettings):
    """The clock's settings; every service's settings include them (duban/settings.py)."""

    model_config = SettingsConfigDict(env_prefix="DUBAN_", extra="ignore")

    # The one clock (duban/clock.py, decision 026): unset, real time; set, the virtual instant the clock
    # shows at DUBAN_CLOCK_EPOCH, from which it runs DUBAN_CLOCK_SPEED times as fast as real time.
    clock_start: AwareDatetime | None = None
    # Virtual seconds per real second: 43200 plays a plan-month in a minute; 0 holds the clock at its start.
    clock_speed: float = Field(1.0, ge=0)
    # The real instant at which the virtual clock shows its start; every process given the same one agrees.
    clock_epoch: AwareDatetime | None = None

    @model_validator(mode="after")
    def _agreeable(self) -> ClockSettings:
        self.time_source  # noqa: B018 - refuses, at start, a clock two processes could disagree on
        return self

    @property
    def time_source(self) -> Clock:
        return Clock(self.clock_start, self.clock_speed, self.clock_epoch)

    def clock(self) -> datetime:
        """Now, for anything with a business meaning (lights, escalations, periods, the event-time window)."""
        return self.time_source.now()


@cache
def process_clock() -> Clock:
    """The clock this process was configured with (its environment does not change while it runs)."""
    return ClockSettings().time_source


def now() -> datetime:
    """Now, by the one clock: real UTC time unless DUBAN_CLOCK_START (and its speed and epoch) say otherwise."""
    return process_clock().now()
