"""Per-department rate limit: a token bucket per department, in this process's memory.

Every event posted takes one token, whether or not it is then accepted; a department may spend up
to `burst` at once and regains `rate` per second. With N intake replicas a department may post up
to N times the rate: the limit protects each process, it is not a district-wide quota.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate_per_s, burst, clock
        self._buckets: dict[str, _Bucket] = {}  # one per authenticated department: bounded by the catalog

    def take(self, key: str, count: int) -> float:
        """Take `count` tokens from `key`'s bucket: 0.0 when granted, else the seconds to wait
        until they would be (nothing is taken then). A count above the burst is never granted."""
        now = self.clock()
        bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if count > self.burst:
            return float("inf")
        if bucket.tokens >= count:
            bucket.tokens -= count
            return 0.0
        return (count - bucket.tokens) / self.rate
