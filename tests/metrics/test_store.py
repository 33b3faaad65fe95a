"""Cases, running sums, published values and their history in a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from duban.consumer import PermanentEventError
from duban.workcal import OfficeHours, OfficeSchedule, WorkingCalendar
from services.metrics import store
from services.metrics.exposition import IndicatorCollector, take_snapshot
from services.metrics.tasks import TaskCountCollector
from tests.conftest import ROOT, migrated_schema, schema_pool
from tests.metrics.conftest import CATALOG, HOURS, Feed, at, tracker_event

pytestmark = pytest.mark.database

REFUND, TAX = "export_tax_refund", "tax-bureau"


async def sums(pool, indicator: str, period: str, department: str = "all"):
    return await pool.fetchrow("SELECT * FROM indicator_sums WHERE indicator_id = $1 AND period = $2"
                               " AND department = $3", indicator, period, department)


async def history(pool, indicator: str, period: str, department: str = "all"):
    return [(r["value"], r["samples"]) for r in await pool.fetch(
        "SELECT value, samples FROM indicator_history WHERE indicator_id = $1 AND period = $2 AND department = $3"
        " ORDER BY id", indicator, period, department)]


async def exposition(pool, now: datetime) -> str:
    collector = IndicatorCollector()
    async with pool.acquire() as conn:
        collector.snapshot = await take_snapshot(conn, CATALOG, HOURS, now=now, exposed_years=2,
                                                 approx_tolerance=0.05)
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


async def test_mean_working_days_across_national_day(feed, pool):
    await feed.closed("R1", REFUND, TAX, "2021-09-30 09:00", "2021-10-08 10:00")  # 1 working day
    await feed.closed("R2", REFUND, TAX, "2021-09-16 09:00", "2021-09-22 10:00")  # 3
    await feed.closed("R3", REFUND, TAX, "2021-10-08 09:00", "2021-10-15 10:00")  # 6
    year = await sums(pool, "export_tax_refund_days", "2021")
    assert (year["n"], year["total"], year["value"]) == (3, 10.0, pytest.approx(3.333333))
    assert (await sums(pool, "export_tax_refund_days", "2021-10"))["value"] == 3.5  # R1 and R3
    assert (await sums(pool, "export_tax_refund_days", "2021-Q3", TAX))["value"] == 3.0
    case = await pool.fetchrow("SELECT * FROM cases WHERE case_id = 'R1'")
    assert (case["calendar_days"], case["working_days"], case["calendar_version"]) == (8, 1, HOURS.calendar.version)


async def test_same_case_id_in_two_departments_is_two_cases(feed, pool):
    # Case ids are the departments' own numbers: only (department, case id) names one case.
    await feed.closed("2021-001", "company_startup", "market-regulation", "2021-09-16 09:00", "2021-09-22 10:00")
    await feed.closed("2021-001", "company_startup", "admin-service-center", "2021-09-30 09:00", "2021-10-08 10:00")
    year = await sums(pool, "company_startup_days", "2021")
    assert (year["n"], year["total"]) == (2, 4.0)  # 3 + 1 working days
    assert (await sums(pool, "company_startup_days", "2021", "market-regulation"))["value"] == 3.0


async def test_paused_time_is_excluded(feed, pool):
    await feed.closed("B1", "building_permit", "construction", "2021-11-01 09:00", "2021-11-12 10:00",
                      pauses=[("2021-11-02 09:00", "2021-11-09 09:00", "expert_review")])
    case = await pool.fetchrow("SELECT working_days, paused_intervals FROM cases WHERE case_id = 'B1'")
    assert case["working_days"] == 4
    assert (await sums(pool, "building_permit_days", "2021"))["value"] == 4.0


async def test_ratio_and_max_steps(feed, pool):
    for i, (instantly, trips) in enumerate(((True, 0), (True, 1), (False, 0), (False, 0))):
        await feed.closed(f"S{i}", "service_item", "admin-service-center", "2021-03-01 09:00", "2021-03-01 09:20",
                          instantly=instantly, trips=trips)
    assert (await sums(pool, "instant_item_ratio", "2021"))["value"] == 0.5
    assert (await sums(pool, "zero_trip_ratio", "2021-03"))["value"] == 0.75
    for case_id, steps in (("P1", 2), ("P2", 4), ("P3", 3)):
        await feed.closed(case_id, "power_connection_low_voltage", "power-supply-center", "2021-05-06 09:00",
                          "2021-05-10 09:00", steps=steps)
    assert (await sums(pool, "power_connection_steps", "2021"))["value"] == 4.0
    # The tracker corrects P2: the maximum is recomputed from the remaining cases.
    await feed.closed("P2", "power_connection_low_voltage", "power-supply-center", "2021-05-06 09:00",
                      "2021-05-10 09:00", steps=2)
    year = await sums(pool, "power_connection_steps", "2021")
    assert (year["n"], year["value"]) == (3, 3.0)
    text = await exposition(pool, at("2021-05-20 12:00"))
    assert 'duban_indicator_compliant{department="all",indicator="power_connection_steps",period="2021",' \
           'unit="steps"} 1.0' in text


async def test_empty_period_exports_no_value_and_no_nan(pool):
    text = await exposition(pool, at("2021-11-26 12:00"))
    assert "NaN" not in text
    labels = 'department="all",indicator="export_tax_refund_days",period="2021",unit="working_days"'
    assert f"duban_indicator_samples{{{labels}}} 0.0" in text
    assert f"duban_indicator_target{{{labels}}} 7.0" in text
    for absent in ("value", "compliant", "forecast", "light"):
        assert f"duban_indicator_{absent}{{{labels}}}" not in text


async def test_late_close_changes_its_month_and_year_and_keeps_the_old_value(feed, pool):
    await feed.closed("L1", REFUND, TAX, "2021-10-11 09:00", "2021-10-13 09:00")  # 2 working days
    await feed.closed("L2", REFUND, TAX, "2021-10-11 09:00", "2021-10-15 09:00")  # 4
    before = {p: await sums(pool, "export_tax_refund_days", p) for p in ("2021", "2021-09", "2021-10")}
    assert before["2021"]["value"] == 3.0 and before["2021-09"] is None
    # A September case reaches the service late, after October's were counted.
    await feed.closed("L0", REFUND, TAX, "2021-09-06 09:00", "2021-09-15 09:00")  # 7
    after = {p: await sums(pool, "export_tax_refund_days", p) for p in ("2021", "2021-09", "2021-10")}
    assert after["2021"]["value"] == pytest.approx(13 / 3, abs=1e-6)
    assert after["2021"]["as_of"] > before["2021"]["as_of"]
    assert after["2021-09"]["value"] == 7.0
    assert after["2021-10"]["as_of"] == before["2021-10"]["as_of"]  # untouched
    assert await history(pool, "export_tax_refund_days", "2021") == [(2.0, 1), (3.0, 2), (pytest.approx(13 / 3), 3)]


async def test_open_cases_flag_a_certain_breach(feed, pool):
    await feed.closed("F1", REFUND, TAX, "2021-11-01 09:00", "2021-11-03 09:00")  # 2 working days
    await feed.opened("F2", REFUND, TAX, "2021-10-08 09:00")  # by Fri 2021-11-26: 36 working days (Sat 10-09 is 调休)
    text = await exposition(pool, at("2021-11-26 12:00"))
    labels = 'department="all",indicator="export_tax_refund_days",period="2021",unit="working_days"'
    assert f"duban_indicator_value{{{labels}}} 2.0" in text
    assert f"duban_indicator_open_cases{{{labels}}} 1.0" in text
    assert f"duban_indicator_forecast{{{labels}}} 19.0" in text  # (2 + 36) / 2
    assert f"duban_indicator_forecast_breach{{{labels}}} 1.0" in text
    assert f"duban_indicator_light{{{labels}}} 1.0" in text  # yellow: forecast to miss
    # An ended period ignores open cases: they will close in a later one.
    assert 'duban_indicator_open_cases{department="all",indicator="export_tax_refund_days",period="2021-10"' not in text


async def test_uncovered_year_stores_the_case_without_a_clock(feed, pool):
    # 2027 and 2028 are provisional; 2029 is beyond them.
    await feed.closed("U1", REFUND, TAX, "2028-12-28 09:00", "2029-01-06 09:00", trips=0)
    case = await pool.fetchrow("SELECT * FROM cases WHERE case_id = 'U1'")
    assert case["working_days"] is None and case["uncovered_year"] == 2029 and "2029" in case["clock_error"]
    year = await sums(pool, "export_tax_refund_days", "2029")
    assert (year["n"], year["unmeasured"], year["value"]) == (0, 1, None)
    text = await exposition(pool, at("2028-12-30 12:00"))
    assert 'duban_calendar_uncovered_cases{case_type="export_tax_refund",status="closed"} 1.0' in text
    assert "duban_calendar_covers_next_year 0.0" in text
    assert 'duban_calendar_covered_year{year="2026"} 1.0' in text


async def test_cancelling_a_closed_case_takes_it_out(feed, pool):
    await feed.closed("C1", REFUND, TAX, "2021-10-11 09:00", "2021-10-13 09:00")
    await feed.closed("C2", REFUND, TAX, "2021-10-11 09:00", "2021-10-15 09:00")
    await feed.send(tracker_event("duban.tracker.case.cancelled.v1", "C2", {
        "department": TAX, "case_type": REFUND, "opened_at": at("2021-10-11 09:00").isoformat(),
        "cancelled_at": at("2021-10-16 09:00").isoformat(), "reason": "applicant withdrew"}))
    year = await sums(pool, "export_tax_refund_days", "2021")
    assert (year["n"], year["value"]) == (1, 2.0)
    buckets = await pool.fetch("SELECT le, count FROM case_duration_buckets WHERE count <> 0")
    assert [(b["le"], b["count"]) for b in buckets] == [(3.0, 1)]


async def test_reported_figures_latest_wins_and_only_from_the_reporter(feed, pool):
    def report(value: float, time: str, source: str = "/departments/tax-bureau", unit: str = "hours_per_year"):
        return {"specversion": "1.0", "id": f"r-{value}-{time[:10]}", "source": source,
                "type": "duban.indicator.value-reported.v1", "subject": "annual_tax_hours", "time": at(time).isoformat(),
                "datacontenttype": "application/json", "data": {"period": "2021", "value": value, "unit": unit}}

    await feed.send(report(95.0, "2021-06-30 10:00"))
    await feed.send(report(88.0, "2021-11-30 10:00"))
    await feed.send(report(92.0, "2021-09-30 10:00"))  # late, older: recorded, not current
    row = await sums(pool, "annual_tax_hours", "2021")
    assert (row["value"], row["n"]) == (88.0, 3)
    with pytest.raises(PermanentEventError) as refused:
        await feed.send(report(10.0, "2021-12-01 10:00", source="/departments/education"))
    assert refused.value.reason == "not_the_reporter"
    with pytest.raises(PermanentEventError) as refused:
        await feed.send(report(10.0, "2021-12-01 10:00", unit="count"))
    assert refused.value.reason == "wrong_unit"


async def test_impossible_clock_is_refused(feed):
    with pytest.raises(PermanentEventError) as refused:
        await feed.closed("X1", REFUND, TAX, "2021-10-15 09:00", "2021-10-11 09:00")
    assert refused.value.reason == "impossible_clock"


async def test_rebuild_matches_the_event_path(feed, pool):
    await feed.closed("E1", REFUND, TAX, "2021-09-30 09:00", "2021-10-08 10:00")
    await feed.closed("E2", REFUND, TAX, "2021-09-16 09:00", "2021-09-22 10:00")
    await feed.closed("E3", "power_connection_low_voltage", "power-supply-center", "2021-05-06 09:00",
                      "2021-05-10 09:00", steps=5)
    columns = "indicator_id, period, department, n, total, maximum, unmeasured, value"
    incremental = await pool.fetch(f"SELECT {columns} FROM indicator_sums ORDER BY 1, 2, 3")
    buckets = await pool.fetch("SELECT * FROM case_duration_buckets ORDER BY 1, 2, 3")
    published = sum(1 for row in incremental if row["value"] is not None)
    # Damage what the rebuild must restore: every sum and value wrong, one row gone, a stray bucket, a lost one.
    await pool.execute("UPDATE indicator_sums SET n = n + 7, total = total * 3 + 1, maximum = 99, unmeasured = 5,"
                       " provisional = 4, value = coalesce(value, 0) + 1")
    await pool.execute("DELETE FROM indicator_sums WHERE (indicator_id, period, department)"
                       " = ('export_tax_refund_days', '2021-10', 'all')")
    await pool.execute("DELETE FROM case_duration_buckets WHERE case_type = 'power_connection_low_voltage'")
    await pool.execute("INSERT INTO case_duration_buckets (case_type, department, le, count, sum)"
                       " VALUES ('company_startup', 'market-regulation', 5, 3, 9)")
    async with pool.acquire() as conn:
        assert await store.rebuild(conn, CATALOG, cause="test rebuild") == 3
    assert await pool.fetch(f"SELECT {columns} FROM indicator_sums ORDER BY 1, 2, 3") == incremental
    assert await pool.fetch("SELECT * FROM case_duration_buckets ORDER BY 1, 2, 3") == buckets
    # Every damaged value was put right and recorded; the deleted row came back as a fresh insert.
    assert await pool.fetchval("SELECT count(*) FROM indicator_history WHERE cause = 'test rebuild'") == published
    # Rebuilding what is already right changes nothing and records nothing.
    async with pool.acquire() as conn:
        assert await store.rebuild(conn, CATALOG, cause="second rebuild") == 3
    assert await pool.fetch(f"SELECT {columns} FROM indicator_sums ORDER BY 1, 2, 3") == incremental
    assert await pool.fetchval("SELECT count(*) FROM indicator_history WHERE cause = 'second rebuild'") == 0




async def test_an_operator_rebuilds_the_figures_with_duban_metrics_rebuild(feed, pool, database_url, schema):
    await feed.closed("O1", REFUND, TAX, "2021-09-30 09:00", "2021-10-08 10:00")  # 1 working day
    await feed.closed("O2", REFUND, TAX, "2021-09-16 09:00", "2021-09-22 10:00")  # 3
    # As after a definition change: the stored sums no longer follow from the cases.
    await pool.execute("UPDATE indicator_sums SET n = 9, total = 90, value = 10")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")} | {
        "DUBAN_DATABASE_URL": database_url, "DUBAN_SCHEMA_NAME": schema}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "entrypoints.cli", "metrics", "rebuild", "--cause", "definition change"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "rebuilt the case-fed indicators from 2 closed cases"), \
        done.stderr
    year = await sums(pool, "export_tax_refund_days", "2021")
    assert (year["n"], year["total"], year["value"]) == (2, 4.0, 2.0)
    assert (await history(pool, "export_tax_refund_days", "2021"))[-1:] == [(2.0, 2)]
    assert await pool.fetchval("SELECT cause FROM indicator_history ORDER BY id DESC LIMIT 1") == "definition change"


async def test_a_new_calendar_year_gives_stored_cases_their_clock(feed, pool, tmp_path):
    await feed.closed("U2", REFUND, TAX, "2028-12-28 09:00", "2029-01-06 09:00",
                      pauses=[("2028-12-29 09:00", "2029-01-02 09:00", "supplement")])
    (tmp_path / "calendar").mkdir()
    (tmp_path / "calendar" / "2029.yaml").write_text(
        'year: 2029\nsource: "test data: New Year only"\nholidays:\n  - {name: 元旦, from: 2029-01-01, to: 2029-01-01}\n')
    hours = OfficeHours(WorkingCalendar(tmp_path / "calendar"), OfficeSchedule.default())
    async with pool.acquire() as conn:
        assert await store.recompute_calendar(conn, CATALOG, hours) == 1
        assert await store.recompute_calendar(conn, CATALOG, hours) == 0
    case = await pool.fetchrow("SELECT * FROM cases WHERE case_id = 'U2'")
    # Dec 29, Jan 2, 3, 4, 5 = 5 working days, minus Jan 2 inside the pause = 4; 2028 is provisional.
    assert (case["working_days"], case["clock_error"], case["calendar_provisional"]) == (4, None, True)
    year = await sums(pool, "export_tax_refund_days", "2029")
    assert (year["n"], year["unmeasured"], year["value"]) == (1, 0, 4.0)
    assert await history(pool, "export_tax_refund_days", "2029") == [(4.0, 1)]


async def test_an_official_year_recomputes_the_provisional_figures_and_keeps_the_old(feed, pool, tmp_path):
    # On the provisional 2027 (元旦 Fri 01-01 only): Dec 29, 30, 31, Jan 4, 5, 6 = 6 working days.
    await feed.closed("Y1", REFUND, TAX, "2026-12-28 09:00", "2027-01-06 09:00")
    await feed.closed("Y2", REFUND, TAX, "2027-03-01 09:00", "2027-03-03 09:00")  # Mar 2, 3 on any 2027 calendar
    await feed.closed("Y3", "service_item", "admin-service-center", "2027-01-04 09:00", "2027-01-04 09:20", trips=0)
    provisional_version = HOURS.calendar.version
    case = await pool.fetchrow("SELECT * FROM cases WHERE case_id = 'Y1'")
    assert (case["working_days"], case["calendar_provisional"], case["calendar_version"]) == (
        6, True, provisional_version)
    assert (await sums(pool, "export_tax_refund_days", "2027"))["provisional"] == 2
    text = await exposition(pool, at("2027-03-10 12:00"))
    labels = 'department="all",indicator="export_tax_refund_days",period="2027",unit="working_days"'
    assert f"duban_indicator_provisional{{{labels}}} 1.0" in text
    assert 'duban_indicator_provisional{department="all",indicator="zero_trip_ratio",period="2027",' \
           'unit="ratio"} 0.0' in text  # a ratio needs no clock
    assert 'duban_calendar_provisional_year{year="2027"} 1.0' in text
    # Provisional is not covered: in December, next year still counts as missing (CalendarNextYearMissing).
    assert "duban_calendar_covers_next_year 0.0" in await exposition(pool, at("2026-12-30 12:00"))

    # The notice arrives (fictional here): Mon 01-04 off as well, Sat 01-09 worked.
    (tmp_path / "2027.yaml").write_text(
        'year: 2027\nsource: "fictional test notice"\nholidays:\n  - {name: 元旦, from: 2027-01-01, to: 2027-01-04}\n'
        'workdays:\n  - {name: 元旦, date: 2027-01-09}\n')
    hours = OfficeHours(WorkingCalendar(tmp_path), OfficeSchedule.default())
    assert hours.calendar.is_covered(2027) and hours.calendar.version != provisional_version
    async with pool.acquire() as conn:
        assert await store.recompute_calendar(conn, CATALOG, hours) == 3  # Y1 by a day; Y2, Y3 no longer provisional
        assert await store.recompute_calendar(conn, CATALOG, hours) == 0

    case = await pool.fetchrow("SELECT * FROM cases WHERE case_id = 'Y1'")
    assert (case["working_days"], case["calendar_provisional"], case["calendar_version"]) == (
        5, False, hours.calendar.version)
    year = await sums(pool, "export_tax_refund_days", "2027")
    assert (year["n"], year["value"], year["provisional"]) == (2, 3.5, 0)
    published = await pool.fetch(
        "SELECT value, calendar_version, cause FROM indicator_history WHERE indicator_id = 'export_tax_refund_days'"
        " AND period = '2027' AND department = 'all' ORDER BY id")
    # The provisional values stay in the history with the version that computed them; each case replaced
    # on the new calendar appends its steps, the last being the value now published.
    assert [(r["value"], r["calendar_version"]) for r in published[:2]] == [
        (6.0, provisional_version), (4.0, provisional_version)]
    assert {(r["calendar_version"], r["cause"]) for r in published[2:]} == {
        (hours.calendar.version, f"calendar {hours.calendar.version}")}
    assert published[-1]["value"] == 3.5


async def test_tasks_are_counted_from_their_first_light_and_then_from_reports(feed, pool):
    collector = TaskCountCollector()
    light = {"from": None, "to": "red", "reason": "past_due", "as_of": at("2026-11-26 00:05").isoformat()}
    await feed.send(tracker_event("duban.tracker.task.light-changed.v1", "T10", light))
    await collector.refresh(pool)
    assert [(r["task_id"], r["status"], r["light"]) for r in collector.rows] == [("T10", "not_started", "red")]
    report = {"status": "in_progress", "percent": 50, "light": "red", "reported_at": at("2026-11-26 09:00").isoformat()}
    await feed.send(tracker_event("duban.tracker.task.updated.v1", "T10", report))
    # Time passes, the unit catches up elsewhere: only the light moves, the reported state stays.
    await feed.send(tracker_event("duban.tracker.task.light-changed.v1", "T10",
                                  {**light, "from": "red", "to": "yellow", "reason": "deadline_near"}))
    await collector.refresh(pool)
    assert [(r["status"], r["light"]) for r in collector.rows] == [("in_progress", "yellow")]
    registry = CollectorRegistry()
    registry.register(collector)
    assert 'duban_tasks{area="A4",light="yellow",status="in_progress"} 1.0' in generate_latest(registry).decode()


def year_of_events() -> list[dict]:
    """Opens, closings, corrections (one taking away a period's maximum), a cancelled closed case, a
    repeated closing, closings on a provisional and an uncovered year, reports out of order, task
    lights before and after reports, a late older report of a task."""
    recorder = Feed.__new__(Feed)
    sent: list[dict] = []

    async def collect(ce: dict) -> None:
        sent.append(ce)

    recorder.send = collect
    steps = [
        recorder.opened("P1", "power_connection_low_voltage", "power-supply-center", "2021-05-06 09:00"),
        recorder.closed("P1", "power_connection_low_voltage", "power-supply-center", "2021-05-06 09:00",
                        "2021-05-10 09:00", steps=4),
        recorder.closed("P2", "power_connection_low_voltage", "power-supply-center", "2021-05-07 09:00",
                        "2021-05-11 09:00", steps=3),
        recorder.closed("P1", "power_connection_low_voltage", "power-supply-center", "2021-05-06 09:00",
                        "2021-05-10 09:00", steps=2),  # the maximum's holder corrected: max is P2's again
        recorder.closed("P1", "power_connection_low_voltage", "power-supply-center", "2021-05-06 09:00",
                        "2021-05-10 09:00", steps=2),  # the same closing again: no change
        recorder.opened("R1", REFUND, TAX, "2021-09-30 09:00"),
        recorder.closed("R1", REFUND, TAX, "2021-09-30 09:00", "2021-10-08 10:00"),
        recorder.closed("R2", REFUND, TAX, "2021-09-16 09:00", "2021-09-22 10:00",
                        pauses=[("2021-09-17 09:00", "2021-09-18 09:00", "supplement")]),
        recorder.closed("R3", REFUND, TAX, "2021-10-08 09:00", "2021-10-15 10:00"),
        recorder.opened("R9", REFUND, TAX, "2021-10-08 09:00"),
        recorder.closed("S1", "service_item", "admin-service-center", "2021-03-01 09:00", "2021-03-01 09:20",
                        instantly=True, trips=0),
        recorder.closed("S2", "service_item", "admin-service-center", "2021-03-01 09:00", "2021-03-01 10:20"),
        recorder.closed("Y1", REFUND, TAX, "2026-12-28 09:00", "2027-01-06 09:00"),  # provisional 2027
        recorder.closed("U1", REFUND, TAX, "2028-12-28 09:00", "2029-01-06 09:00"),  # uncovered 2029
        recorder.closed("C1", "company_startup", "market-regulation", "2021-09-16 09:00", "2021-09-22 15:30"),
        recorder.closed("C2", "company_startup", "market-regulation", "2021-09-16 09:00", "2021-09-17 11:10"),
    ]
    return steps, sent


async def test_a_batch_publishes_what_its_events_publish_one_by_one(feed, pool, database_url):
    steps, sent = year_of_events()
    for step in steps:
        await step
    light = {"from": None, "to": "red", "reason": "past_due", "as_of": at("2021-11-26 00:05").isoformat()}
    report = {"status": "in_progress", "percent": 50, "light": "red", "reported_at": at("2021-11-26 09:00").isoformat()}
    older = {**report, "percent": 30, "reported_at": at("2021-11-20 09:00").isoformat()}

    def reported(value: float, time: str) -> dict:
        return {"specversion": "1.0", "id": f"r-{value}", "source": "/departments/tax-bureau",
                "type": "duban.indicator.value-reported.v1", "subject": "annual_tax_hours",
                "time": at(time).isoformat(), "datacontenttype": "application/json",
                "data": {"period": "2021", "value": value, "unit": "hours_per_year"}}

    sent += [
        tracker_event("duban.tracker.case.cancelled.v1", "R3", {
            "department": TAX, "case_type": REFUND, "opened_at": at("2021-10-08 09:00").isoformat(),
            "cancelled_at": at("2021-10-16 09:00").isoformat(), "reason": "applicant withdrew"}),
        tracker_event("duban.tracker.task.light-changed.v1", "T10", light),
        tracker_event("duban.tracker.task.updated.v1", "T10", report),
        tracker_event("duban.tracker.task.updated.v1", "T10", older),  # a replay of an older report: ignored
        tracker_event("duban.tracker.task.light-changed.v1", "T10", {**light, "from": "red", "to": "yellow"}),
        tracker_event("duban.tracker.task.updated.v1", "T03", report),
        reported(95.0, "2021-06-30 10:00"), reported(88.0, "2021-11-30 10:00"), reported(92.0, "2021-09-30 10:00"),
    ]
    for ce in sent:
        await feed.send(ce)
    async with migrated_schema(database_url, "metrics") as other, schema_pool(database_url, other) as batched:
        await Feed(batched).send_batch(sent)
        for query in (
            "SELECT * FROM cases ORDER BY department, case_id",
            "SELECT * FROM indicator_sums ORDER BY indicator_id, period, department",
            "SELECT indicator_id, period, department, value, samples, cause, calendar_version FROM indicator_history"
            " ORDER BY id",
            "SELECT * FROM case_duration_buckets ORDER BY case_type, department, le",
            "SELECT * FROM task_state ORDER BY task_id",
            "SELECT * FROM reported_values ORDER BY source, event_id",
        ):
            # Times of writing differ between the two schemas; everything else is the same, float for float.
            one_by_one, together = [[{k: v for k, v in r.items() if k not in ("updated_at", "as_of", "received_at")}
                                     for r in rows] for rows in (await pool.fetch(query), await batched.fetch(query))]
            assert together == one_by_one, query
            assert together, query
    maximum = await sums(pool, "power_connection_steps", "2021")
    assert (maximum["n"], maximum["maximum"]) == (2, 3.0)
