"""The indicator arithmetic on small case sets computed by hand."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timezone
from types import SimpleNamespace

import pytest

from duban.catalog import load_catalog
from duban.workcal import OfficeHours, OfficeSchedule, WorkingCalendar
from services.metrics.domain.indicators import (
    CaseFacts,
    Clock,
    Period,
    Sums,
    build_figures,
    check_supported,
    contribution,
    evaluate,
    forecast,
    meets,
    near_limit,
    periods_of,
    read_clock,
    uses_clock,
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


# --- every rule at its boundary ------------------------------------------------------------------

DAYS = CATALOG.indicator("export_tax_refund_days")  # mean working days, le 7
RATIO = CATALOG.indicator("zero_trip_ratio")  # ratio, ge 0.7
STEPS = CATALOG.indicator("power_connection_steps")  # max steps, le 3
REPORTED = CATALOG.indicator("annual_tax_hours")  # value, le 90


def like(ind, **changes):
    return ind.model_copy(update=changes)


@pytest.mark.parametrize("changes, message", [
    ({"aggregate": "sum"}, "indicator export_tax_refund_days: aggregate 'sum' over cases is not implemented"),
    ({"aggregate": "ratio", "id": "made_up_ratio"}, "indicator made_up_ratio: a ratio needs its numerator"),
    ({"unit": "count"}, "indicator export_tax_refund_days: unit 'count' is not measured on cases"),
])
def test_an_indicator_the_engine_cannot_compute_is_refused(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_supported(SimpleNamespace(indicators=[like(DAYS, **changes)]))


def test_a_reported_indicator_must_take_the_reported_value():
    with pytest.raises(ValueError, match="indicator annual_tax_hours: a reported indicator takes the reported value"):
        check_supported(SimpleNamespace(indicators=[like(REPORTED, aggregate="mean")]))
    check_supported(SimpleNamespace(indicators=[REPORTED, RATIO, STEPS, like(DAYS, unit="working_hours"),
                                                like(DAYS, unit="calendar_days")]))


@pytest.mark.parametrize("comparison, target, target_max, value, met", [
    ("le", 7, None, 7.0, True), ("le", 7, None, 7.000001, False),
    ("ge", 0.7, None, 0.7, True), ("ge", 0.7, None, 0.699999, False),
    ("between", 2, 3, 2.0, True), ("between", 2, 3, 3.0, True), ("between", 2, 3, 1.999, False),
    ("between", 2, 3, 3.001, False),
    ("approx", 1200, None, 1260.0, True), ("approx", 1200, None, 1140.0, True), ("approx", 1200, None, 1260.5, False),
    ("approx", 1200, None, 1139.5, False),
])
def test_meets_at_the_boundaries(comparison, target, target_max, value, met):
    ind = like(DAYS, comparison=comparison, target=target, target_max=target_max)
    assert meets(ind, value, 0.05) is met


@pytest.mark.parametrize("comparison, target, target_max, value, near", [
    ("le", 10, None, 9.0, True), ("le", 10, None, 8.99, False),
    ("ge", 10, None, 11.0, True), ("ge", 10, None, 11.01, False),
    ("between", 2, 10, 9.0, True), ("between", 2, 10, 8.99, False),
    ("approx", 1000, None, 1046.0, True), ("approx", 1000, None, 954.0, True), ("approx", 1000, None, 1044.0, False),
])
def test_near_limit_at_the_boundaries(comparison, target, target_max, value, near):
    ind = like(DAYS, comparison=comparison, target=target, target_max=target_max)
    assert near_limit(ind, value, 0.05) is near


def test_an_approximate_target_is_near_its_limit_from_90_percent_of_the_tolerance_on():
    ind = like(DAYS, comparison="approx", target=100)
    assert [near_limit(ind, v, 0.5) for v in (145.0, 144.0, 55.0)] == [True, False, True]  # 0.9 × 0.5 × 100 = 45


def test_an_approximate_target_is_judged_with_the_tolerance_given():
    school = CATALOG.indicator("new_school_places")  # about 1200
    def judged(value, tolerance):
        f = evaluate(school, period="2021", department="all", sums=Sums(n=1, reported=value), open_clocks=[],
                     approx_tolerance=tolerance, as_of=None)
        return f.compliant, f.light
    assert judged(1100.0, 0.05) == (False, "red")
    assert judged(1100.0, 0.1) == (True, "green")
    assert judged(1210.0, 0.05) == (True, "green")
    assert judged(1255.0, 0.05) == (True, "yellow")  # 55 from 1200: within 5 %, past 90 % of it
    between = evaluate(like(STEPS, comparison="between", target=2, target_max=3), period="2021", department="all",
                       sums=Sums(n=1, total=2.0, maximum=2.0), open_clocks=[], approx_tolerance=0.05, as_of=None)
    assert (between.target, between.target_max, between.light) == (2, 3, "green")


def test_the_light_of_each_case():
    def light(ind, sums, open_clocks=()):
        return evaluate(ind, period="2021", department="all", sums=sums, open_clocks=list(open_clocks),
                        approx_tolerance=0.05, as_of=None).light
    assert light(DAYS, Sums()) is None
    assert light(DAYS, Sums(), [Clock(30, 20, 100.0)]) == "yellow"  # nothing closed, the open case is late already
    assert light(DAYS, Sums(n=1, total=8.0)) == "red"
    assert light(DAYS, Sums(n=1, total=6.3)) == "yellow"  # within 10 % of 7
    assert light(DAYS, Sums(n=1, total=6.0)) == "green"
    assert light(DAYS, Sums(n=1, total=2.0), [Clock(30, 20, 100.0)]) == "yellow"  # met now, breach certain


def test_a_figure_carries_the_sums_the_target_and_whether_a_provisional_year_is_behind_it():
    as_of = datetime(2021, 10, 5, tzinfo=timezone.utc)
    result = evaluate(like(STEPS, aspiration=2.0), period="2021-Q3", department="power-supply-center",
                      sums=Sums(n=2, total=5.0, maximum=3.0, unmeasured=1), open_clocks=[None],
                      approx_tolerance=0.05, as_of=as_of)
    assert (result.indicator, result.period, result.department, result.unit, result.value, result.samples,
            result.unmeasured, result.open_cases, result.target, result.target_max, result.compliant,
            result.forecast, result.certain_breach, result.light, result.as_of, result.provisional,
            result.aspiration) == ("power_connection_steps", "2021-Q3", "power-supply-center", "steps", 3.0, 2, 1, 1,
                                   3.0, None, True, 3.0, False, "yellow", as_of, False, 2.0)

    def provisional(ind, sums, open_clocks=()):
        return evaluate(ind, period="2027", department="all", sums=sums, open_clocks=list(open_clocks),
                        approx_tolerance=0.05, as_of=None).provisional
    assert provisional(DAYS, Sums(n=1, total=1.0, provisional=1)) is True
    assert provisional(DAYS, Sums(n=1, total=1.0)) is False
    assert provisional(DAYS, Sums(), [None, Clock(1, 1, 8.0, provisional=True)]) is True
    assert provisional(DAYS, Sums(), [Clock(1, 1, 8.0, provisional=False)]) is False
    assert provisional(RATIO, Sums(), [Clock(1, 1, 8.0, provisional=True)]) is False  # a ratio counts no days


def test_forecast_in_each_case():
    late = Clock(30, 20, 100.0)
    assert forecast(like(DAYS, comparison="approx"), Sums(n=1, total=1.0), [late]) is None
    assert forecast(like(RATIO, comparison="approx"), Sums(n=1, total=1.0), [late]) is None
    assert forecast(like(DAYS, comparison="between", target=2, target_max=10), Sums(n=1, total=4.0), [late]) == 12.0
    assert forecast(REPORTED, Sums(reported=80.0), [late]) is None
    assert forecast(DAYS, Sums(n=3, total=10.0), []) == pytest.approx(3.333333, abs=1e-9)
    assert forecast(DAYS, Sums(n=1, total=4.0), [late, None]) == 12.0  # (4 + 20) / 2: an uncovered clock bounds nothing
    assert forecast(DAYS, Sums(), [None]) is None
    assert forecast(DAYS, Sums(n=2, total=1.0), [Clock(1, 0, 0.0)]) == pytest.approx(0.333333, abs=1e-9)
    assert forecast(like(DAYS, comparison="ge"), Sums(n=1, total=4.0), [late]) is None  # ages grow without limit
    assert forecast(STEPS, Sums(n=1, total=2.0, maximum=2.0), [late]) == 2.0
    assert forecast(RATIO, Sums(n=2, total=1.0), [late]) == 0.666667  # ge: the open cases succeed; six decimals
    assert forecast(like(RATIO, comparison="le"), Sums(n=2, total=1.0), [late]) == pytest.approx(1 / 3, abs=1e-6)


def test_value_and_contribution_in_each_case():
    assert value_of(DAYS, Sums(n=3, total=15.0000001)) == 5.0
    assert value_of(STEPS, Sums(n=2, total=5.0, maximum=3.0)) == 3.0
    assert value_of(REPORTED, Sums(n=1, reported=80.5)) == 80.5
    assert value_of(REPORTED, Sums()) is None
    provisional = Clock(3, 2, 12.0, provisional=True)
    case = CaseFacts("power_connection_low_voltage", "power-supply-center", date(2027, 3, 1), steps=4,
                     handled_instantly=False, trips=0, clock=provisional)
    assert contribution(DAYS, case) == Sums(n=1, total=2.0, maximum=2.0, provisional=1)
    assert contribution(STEPS, case) == Sums(n=1, total=4.0, maximum=4.0, provisional=0)
    assert contribution(RATIO, case) == Sums(n=1, total=1.0, maximum=1.0, provisional=0)
    assert contribution(DAYS, replace(case, clock=None)) == Sums(unmeasured=1)
    assert [uses_clock(i) for i in (DAYS, RATIO, STEPS, REPORTED, like(DAYS, unit="calendar_days"),
                                    like(RATIO, unit="working_days"))] == [True, False, False, False, True, False]


def test_a_clock_says_whether_a_provisional_year_is_behind_it():
    official = read_clock(HOURS, opened_at=at("2021-09-30 09:00"), closed_at=at("2021-10-08 10:00"))
    assert (official.clock, official.error, official.uncovered_year) == (Clock(8, 1, 8.0), None, None)
    year = min(HOURS.calendar.provisional_years)
    crossing = read_clock(HOURS, opened_at=at(f"{year - 1}-12-28 09:00"), closed_at=at(f"{year}-01-06 09:00"))
    assert crossing.clock.provisional is True
    # Still open and measured before the year turns: nothing provisional yet.
    young = read_clock(HOURS, opened_at=at(f"{year - 1}-12-28 09:00"), as_of=at(f"{year - 1}-12-30 09:00"))
    assert young.clock.provisional is False


def test_periods_contain_their_own_days_only():
    quarter = Period.parse("2021-Q4")
    assert [quarter.contains(d) for d in (date(2021, 9, 30), date(2021, 10, 1), date(2021, 12, 31),
                                          date(2022, 1, 1))] == [False, True, True, False]
    assert [periods_of(date(2021, m, 1))[1] for m in (1, 3, 4, 6, 7, 9, 10, 12)] == [
        "2021-Q1", "2021-Q1", "2021-Q2", "2021-Q2", "2021-Q3", "2021-Q3", "2021-Q4", "2021-Q4"]
    with pytest.raises(ValueError, match=re.escape("period '2021-13' is not YYYY, YYYY-Qn or YYYY-MM")):
        Period.parse("2021-13")


def test_build_figures_covers_the_plan_and_the_departments_with_open_cases():
    as_of = datetime(2021, 10, 4, tzinfo=timezone.utc)
    sums = {("export_tax_refund_days", "2021-09", "tax-bureau"): (Sums(n=2, total=6.0), as_of),
            ("annual_tax_hours", "2021", "tax-bureau"): (Sums(n=1, reported=95.0), as_of),
            ("new_school_places", "2021", "all"): (Sums(n=1, reported=1100.0), as_of)}
    open_clocks = {("export_tax_refund", "tax-bureau"): [Clock(10, 8, 60.0)]}
    figures = build_figures(CATALOG, sums, open_clocks, today=date(2021, 10, 5), periods=["2021", "2021-Q3"],
                            approx_tolerance=0.05)
    keys = [(f.indicator, f.period, f.department) for f in figures]
    expected = ({(i.id, p, "all") for i in CATALOG.indicators for p in ("2021", "2021-Q3")} | set(sums)
                | {("export_tax_refund_days", "2021", "tax-bureau")})  # running 2021 only; Q3 has ended
    assert keys == sorted(expected)
    by_key = {(f.indicator, f.period, f.department): f for f in figures}
    running = by_key[("export_tax_refund_days", "2021", "tax-bureau")]
    assert (running.samples, running.open_cases, running.value, running.forecast, running.light, running.as_of) == (
        0, 1, None, 8.0, "yellow", None)
    ended = by_key[("export_tax_refund_days", "2021-09", "tax-bureau")]
    assert (ended.samples, ended.open_cases, ended.value, ended.as_of) == (2, 0, 3.0, as_of)
    assert by_key[("export_tax_refund_days", "2021-Q3", "all")].open_cases == 0
    reported = by_key[("annual_tax_hours", "2021", "tax-bureau")]
    assert (reported.value, reported.open_cases, reported.compliant, reported.light) == (95.0, 0, False, "red")
    school = by_key[("new_school_places", "2021", "all")]
    assert (school.value, school.compliant, school.light) == (1100.0, False, "red")  # 100 from 1200 is beyond 5 %
