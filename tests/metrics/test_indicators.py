"""The indicator arithmetic on small case sets computed by hand."""

from __future__ import annotations

from datetime import date

import pytest

from duban.catalog import load_catalog
from duban.workcal import OfficeHours, OfficeSchedule, WorkingCalendar
from services.metrics.indicators import (
    CaseFacts,
    Clock,
    Period,
    Sums,
    check_supported,
    contribution,
    evaluate,
    forecast,
    periods_of,
    read_clock,
    value_of,
)
from tests.conftest import at

CATALOG = load_catalog()
HOURS = OfficeHours(WorkingCalendar(), OfficeSchedule.default())
def closed_case(opened: str, closed: str, *, pauses=(), steps=3, instantly=False, trips=1) -> CaseFacts:
    reading = read_clock(HOURS, opened_at=at(opened), closed_at=at(closed), pauses=pauses)
    return CaseFacts(case_type="export_tax_refund", department="tax-bureau", closed_on=at(closed).date(),
                     steps=steps, handled_instantly=instantly, trips=trips, clock=reading.clock)


def total(ind_id: str, cases: list[CaseFacts]) -> Sums:
    ind = CATALOG.indicator(ind_id)
    sums = Sums()
    for case in cases:
        part = contribution(ind, case)
        sums = Sums(n=sums.n + part.n, total=sums.total + part.total, unmeasured=sums.unmeasured + part.unmeasured,
                    maximum=max((m for m in (sums.maximum, part.maximum) if m is not None), default=None))
    return sums


def figure(ind_id: str, sums: Sums, open_clocks=()):
    return evaluate(CATALOG.indicator(ind_id), period="2021", department="all", sums=sums, open_clocks=list(open_clocks),
                    approx_tolerance=0.05, as_of=None)


def test_the_catalog_is_computable():
    check_supported(CATALOG)


def test_mean_working_days_across_national_day():
    cases = [
        closed_case("2021-09-30 09:00", "2021-10-08 10:00"),  # 1: National Day week skipped
        closed_case("2021-09-16 09:00", "2021-09-22 10:00"),  # 3: Fri 17, Sat 18 (调休), Wed 22
        closed_case("2021-10-08 09:00", "2021-10-15 10:00"),  # 6: Sat 9 (调休), 11–15
    ]
    assert [c.clock.working_days for c in cases] == [1, 3, 6]
    result = figure("export_tax_refund_days", total("export_tax_refund_days", cases))
    assert result.value == pytest.approx(10 / 3, abs=1e-6)
    assert (result.samples, result.compliant, result.light) == (3, True, "green")


def test_paused_time_is_left_out():
    paused = [(at("2021-11-02 09:00"), at("2021-11-09 09:00"), "expert_review")]
    case = closed_case("2021-11-01 09:00", "2021-11-12 10:00", pauses=paused)
    # 9 working days in all (Nov 2–5, 8–12), 5 of them (Nov 3–5, 8–9) paused.
    assert case.clock.working_days == 4
    assert case.clock.calendar_days == 11 - 7


def test_ratio_counts_the_flagged_share():
    cases = [closed_case("2021-03-01 09:00", "2021-03-01 09:30", instantly=i, trips=t)
             for i, t in ((True, 0), (True, 1), (False, 0), (False, 0))]
    instant = figure("instant_item_ratio", total("instant_item_ratio", cases))
    zero_trip = figure("zero_trip_ratio", total("zero_trip_ratio", cases))
    assert (instant.value, instant.compliant, instant.light) == (0.5, True, "yellow")  # at the limit
    # 0.75 meets 70 % but lies within 10 % of it (≤ 0.77).
    assert (zero_trip.value, zero_trip.compliant, zero_trip.light) == (0.75, True, "yellow")


def test_max_steps_against_a_ceiling():
    # "压缩至2到3个": at most 3 steps; a connection done in a single step meets it.
    for steps, (compliant, light) in {1: (True, "green"), 2: (True, "green"), 3: (True, "yellow"),
                                      4: (False, "red")}.items():
        cases = [closed_case("2021-03-01 09:00", "2021-03-02 09:00", steps=s) for s in (1, steps)]
        result = figure("power_connection_steps", total("power_connection_steps", cases))
        assert (result.value, result.compliant, result.light) == (steps, compliant, light)


def test_empty_period_has_no_value_and_no_compliance():
    result = figure("export_tax_refund_days", Sums())
    assert (result.value, result.compliant, result.forecast, result.light) == (None, None, None, None)


def test_uncovered_year_gives_no_clock_and_the_reason():
    reading = read_clock(HOURS, opened_at=at("2028-12-28 09:00"), closed_at=at("2029-01-05 09:00"))
    assert reading.clock is None and reading.uncovered_year == 2029 and "2029" in reading.error
    case = CaseFacts("export_tax_refund", "tax-bureau", date(2029, 1, 5), 3, False, 0, None)
    sums = total("export_tax_refund_days", [case])
    assert (sums.n, sums.unmeasured) == (0, 1)
    assert value_of(CATALOG.indicator("export_tax_refund_days"), sums) is None
    assert total("zero_trip_ratio", [case]).n == 1  # a ratio needs no clock


def test_open_cases_make_a_breach_certain():
    ind = CATALOG.indicator("export_tax_refund_days")
    closed = Sums(n=2, total=10.0, maximum=6.0)  # mean 5: compliant, not near the limit of 7
    assert figure("export_tax_refund_days", closed).light == "green"
    # Two open cases already 12 working days old: (10 + 24) / 4 = 8.5 > 7 whatever happens next.
    open_clocks = [Clock(16, 12, 84.0), Clock(15, 12, 84.0)]
    result = figure("export_tax_refund_days", closed, open_clocks)
    assert (result.value, result.forecast, result.certain_breach, result.light) == (5.0, 8.5, True, "yellow")
    assert result.open_cases == 2
    # A young open case still leaves room.
    assert forecast(ind, closed, [Clock(2, 1, 3.0)]) == pytest.approx(11 / 3, abs=1e-6)


def test_ratio_forecast_assumes_every_open_case_succeeds():
    sums = Sums(n=10, total=3.0)  # 30 % zero-trip so far
    result = figure("zero_trip_ratio", sums, [None] * 10)
    assert result.forecast == 0.65 and result.certain_breach  # even 10 more successes give 13/20


def test_reported_value_has_no_forecast():
    result = figure("annual_tax_hours", Sums(n=1, reported=95.0))
    assert (result.value, result.compliant, result.forecast, result.light) == (95.0, False, None, "red")


@pytest.mark.parametrize(("key", "kind", "first", "last"), [
    ("2021", "year", date(2021, 1, 1), date(2021, 12, 31)),
    ("2021-Q3", "quarter", date(2021, 7, 1), date(2021, 9, 30)),
    ("2024-02", "month", date(2024, 2, 1), date(2024, 2, 29)),
])
def test_periods(key, kind, first, last):
    assert Period.parse(key) == Period(key, kind, first, last)


@pytest.mark.parametrize("key", ["2021-Q5", "2021-13", "21", "2021-9", "2021Q1"])
def test_bad_periods(key):
    with pytest.raises(ValueError):
        Period.parse(key)


def test_a_case_counts_in_its_year_quarter_and_month():
    assert periods_of(date(2021, 10, 8)) == ("2021", "2021-Q4", "2021-10")
