"""The domain rules without HTTP: who may say what, the rate limiter, and sorting out repeats."""

from __future__ import annotations

import pytest

from duban.catalog import load_catalog
from services.intake.domain.ledger import payload_hash, sort_out
from services.intake.domain.ratelimit import RateLimiter
from services.intake.domain.rules import refusal
from tests.intake.conftest import case_opened, progress

CATALOG = load_catalog()


def report(indicator: str, department: str) -> dict:
    return {"specversion": "1.0", "id": "r-1", "source": f"/departments/{department}",
            "type": "duban.indicator.value-reported.v1", "subject": indicator, "time": "2026-12-31T17:00:00+08:00",
            "data": {"period": "2026", "value": 12.5, "unit": "hours_per_year"}}


_ALLOWED = [pytest.param(*case) for case in [
    ("market-regulation", progress("T07", "market-regulation")),  # lead of T07
    ("health", progress("T17", "health")),  # responsible unit of T17
    ("hongshan-town", progress("T06", "hongshan-town")),  # member of 各街镇, responsible for T06
    ("commerce", progress("T20", "commerce")),  # T20 names 各相关部门: any unit
    ("district-office", progress("T01", "district-office")),  # the same rule, nothing more
    ("admin-service-center", case_opened("S-1", "company_startup", "admin-service-center")),
    ("market-regulation", case_opened("S-2", "company_startup", "market-regulation")),
    ("tax-bureau", report("annual_tax_hours", "tax-bureau")),
]]


@pytest.mark.parametrize(("department", "event"), _ALLOWED)
def test_allowed(department, event):
    assert refusal(CATALOG, department, event) is None


_REFUSED = [pytest.param(*case) for case in [
    ("tax-bureau", progress("T07", "market-regulation"),
     "source '/departments/market-regulation' is not yours: this key posts as '/departments/tax-bureau'"),
    ("district-office", progress("T09", "district-office"),
     "district-office is neither lead nor responsible unit of T09 (lead: tax-bureau; responsible: none)"),
    ("health", case_opened("P-1", "power_connection_low_voltage", "health"),
     "health does not feed power_connection_low_voltage cases (sent by power-supply-center)"),
    ("district-office", report("annual_tax_hours", "district-office"),
     "district-office does not report annual_tax_hours (reported by tax-bureau)"),
    ("tax-bureau", report("export_tax_refund_days", "tax-bureau"),
     "export_tax_refund_days is computed from export_tax_refund cases, not reported"),
    ("tax-bureau", report("tax_happiness", "tax-bureau"), "no indicator 'tax_happiness' in the plan catalog"),
]]


@pytest.mark.parametrize(("department", "event", "reason"), _REFUSED)
def test_refused_with_the_reason(department, event, reason):
    assert refusal(CATALOG, department, event) == reason


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_lets_a_burst_through_then_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate_per_s=10, burst=50, clock=clock)
    assert limiter.take("court", 50) == 0.0
    assert limiter.take("court", 5) == pytest.approx(0.5)  # nothing taken by a refusal
    assert limiter.take("tax", 50) == 0.0  # each department has its own bucket
    clock.now += 0.5
    assert limiter.take("court", 5) == 0.0
    clock.now += 3600
    assert limiter.take("court", 51) == float("inf")  # more than a burst never fits
    assert limiter.take("court", 50) == 0.0  # refilled up to the burst, not beyond


def test_sort_out_repeats_and_conflicts():
    a, b = progress("T07", "market-regulation", 10), progress("T07", "market-regulation", 20)
    b_changed = dict(b, time="2026-11-27T09:30:00+08:00")
    events = [a, b, a, b_changed]
    digests = [payload_hash(e) for e in events]
    fresh, duplicates, conflicts = sort_out(events, digests, {})
    assert (fresh, duplicates) == ([0, 1], [a["id"]])
    assert conflicts == [{"index": 3, "id": b["id"], "reason": f"id {b['id']!r} is used earlier in this batch for"
                          " an event with a different type, subject, time or data"}]
    fresh, duplicates, conflicts = sort_out([a, b], digests[:2], {a["id"]: payload_hash(a)})
    assert (fresh, duplicates, conflicts) == ([1], [a["id"]], [])


def test_payload_hash_ignores_the_key_and_the_default_content_type():
    event = progress("T07", "market-regulation")
    bare = {k: v for k, v in event.items() if k != "datacontenttype"}
    assert payload_hash(event) == payload_hash(bare) == payload_hash(dict(event, id="other", source="/x"))
    assert payload_hash(event) != payload_hash(dict(event, subject="T08"))


def test_the_referee_remembers_refusal_s_answers():
    """Intake judges through Referee, which must answer what refusal answers, for every case above
    and for a second event about the same thing (a remembered answer)."""
    from services.intake.domain.rules import Referee

    referee = Referee(CATALOG, size=3)
    cases = [(d, e) for d, e in (p.values for p in _ALLOWED)] + [(d, e) for d, e, _ in (p.values for p in _REFUSED)]
    for _ in range(2):
        for department, event in cases:
            assert referee.refusal(department, event) == refusal(CATALOG, department, event)
