"""/metrics for the indicators: a snapshot taken after each applied batch (and every little while, as
open cases age), rendered by a collector that never touches the database. A scrape costs the same
with ten cases or ten million: it walks the snapshot, whose size is bounded by indicators × periods
× departments. Names and labels are documented in docs/metrics.md."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import asyncpg
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from duban.catalog import Catalog
from duban.workcal import OfficeHours
from services.metrics import store
from services.metrics.domain.indicators import (
    ALL_DEPARTMENTS,
    DURATION_BUCKETS,
    Clock,
    Figure,
    build_figures,
    civil_date,
    periods_of,
    read_clock,
)

LIGHT_CODES = {"green": 0, "yellow": 1, "red": 2}
FIGURE_LABELS = ("indicator", "period", "unit", "department")


def open_clocks_now(hours: OfficeHours, rows: list[asyncpg.Record], now: datetime
                    ) -> tuple[dict[tuple[str, str], list[Clock | None]], Counter]:
    """Current clocks of the open cases by (case type, department), each case also under 'all'; and
    how many open cases per case type have no clock because the calendar does not cover today."""
    by_group: dict[tuple[str, str], list[Clock | None]] = defaultdict(list)
    uncovered: Counter = Counter()
    for row in rows:
        # The tracker does not announce pauses of open cases: an open case's age includes them.
        reading = read_clock(hours, opened_at=row["opened_at"], as_of=max(now, row["opened_at"]))
        if reading.clock is None:
            uncovered[row["case_type"]] += 1
        for department in (row["department"], ALL_DEPARTMENTS):
            by_group[(row["case_type"], department)].append(reading.clock)
    return by_group, uncovered


@dataclass
class Snapshot:
    taken_at: datetime
    figures: list[Figure] = field(default_factory=list)
    buckets: list[asyncpg.Record] = field(default_factory=list)
    uncovered: dict[tuple[str, str], int] = field(default_factory=dict)  # (case type, status) -> cases
    covered_years: list[int] = field(default_factory=list)
    provisional_years: tuple[int, ...] = ()
    next_year_covered: bool = False
    current_periods: tuple[str, ...] = ()  # year, quarter and month of today (Asia/Shanghai)


async def take_snapshot(conn: asyncpg.Connection, catalog: Catalog, hours: OfficeHours, *, now: datetime,
                        exposed_years: int, approx_tolerance: float) -> Snapshot:
    today = civil_date(now)
    open_by_group, open_uncovered = open_clocks_now(hours, await store.read_open_cases(conn), now)
    figures = build_figures(
        catalog, await store.read_sums(conn, from_year=today.year - exposed_years + 1), open_by_group,
        today=today, periods=periods_of(today), approx_tolerance=approx_tolerance)
    closed_uncovered = await store.count_uncovered(conn)
    uncovered = {**{(t, "closed"): n for t, n in closed_uncovered.items()},
                 **{(t, "open"): n for t, n in open_uncovered.items()}}
    calendar = hours.calendar
    return Snapshot(taken_at=now, figures=figures, buckets=await store.read_duration_buckets(conn),
                    uncovered=uncovered, covered_years=calendar.covered_years(),
                    provisional_years=calendar.provisional_years,
                    next_year_covered=calendar.is_covered(today.year + 1), current_periods=periods_of(today))


class IndicatorCollector(Collector):
    def __init__(self) -> None:
        self.snapshot = Snapshot(taken_at=datetime.now(timezone.utc))

    def collect(self):
        snap = self.snapshot
        families = {
            name: GaugeMetricFamily(f"duban_indicator_{name}", doc, labels=FIGURE_LABELS)
            for name, doc in (
                ("value", "The indicator's value for the period (absent when no case was measured)"),
                ("target", "The target (the lower end for a range)"),
                ("target_max", "The upper end of a range target"),
                ("aspiration", "The better value the plan names beside the target (2到3个: at most 3, aiming for 2)"),
                ("samples", "Cases measured in the period (reports received, for a reported indicator)"),
                ("open_cases", "Open cases that may still close in the period (running periods only)"),
                ("compliant", "1 when the value meets the target, 0 when not; absent without a value"),
                ("forecast", "The most favourable value the period can still end with, given the known cases"),
                ("forecast_breach", "1 when even the forecast misses the target: a certain breach"),
                ("light", "0 green, 1 yellow, 2 red (DESIGN §5); absent without a value or forecast"),
                ("as_of_timestamp_seconds", "When the published value last changed"),
                ("provisional", "1 when a clock behind the figure rests on a provisional calendar year"),
            )
        }
        for fig in snap.figures:
            labels = [fig.indicator, fig.period, fig.unit, fig.department]
            optional = {"value": fig.value, "target_max": fig.target_max, "aspiration": fig.aspiration,
                        "forecast": fig.forecast,
                        "compliant": None if fig.compliant is None else int(fig.compliant),
                        "forecast_breach": None if fig.forecast is None else int(fig.certain_breach),
                        "light": LIGHT_CODES.get(fig.light),
                        "as_of_timestamp_seconds": fig.as_of.timestamp() if fig.as_of else None}
            always = {"target": fig.target, "samples": fig.samples, "open_cases": fig.open_cases,
                      "provisional": int(fig.provisional)}
            for name, value in (*always.items(), *optional.items()):
                if value is not None:
                    families[name].add_metric(labels, value)
        yield from families.values()

        histogram = HistogramMetricFamily("duban_case_duration_working_days",
                                          "Closed cases by duration in working days, paused time excluded",
                                          labels=["case_type", "department"])
        series: dict[tuple[str, str], list] = defaultdict(list)
        for row in snap.buckets:
            series[(row["case_type"], row["department"])].append(row)
        for labels, rows in sorted(series.items()):
            cumulative, running = [], 0
            for bound in DURATION_BUCKETS:
                running += sum(r["count"] for r in rows if r["le"] == bound)
                cumulative.append((floatToGoString(bound), running))
            histogram.add_metric(list(labels), cumulative, sum(r["sum"] for r in rows))
        yield histogram

        uncovered = GaugeMetricFamily("duban_calendar_uncovered_cases",
                                      "Cases without a clock: their dates lie in a year the working-day calendar"
                                      " does not cover", labels=["case_type", "status"])
        for (case_type, status), n in sorted(snap.uncovered.items()):
            uncovered.add_metric([case_type, status], n)
        yield uncovered
        covered = GaugeMetricFamily("duban_calendar_covered_year", "1 for each year the working-day calendar covers",
                                    labels=["year"])
        for year in snap.covered_years:
            covered.add_metric([str(year)], 1)
        yield covered
        provisional = GaugeMetricFamily(
            "duban_calendar_provisional_year",
            "1 for each year answered from the statutory holidays alone until its official schedule arrives",
            labels=["year"])
        for year in snap.provisional_years:
            provisional.add_metric([str(year)], 1)
        yield provisional
        yield GaugeMetricFamily("duban_calendar_covers_next_year",
                                "1 when the working-day calendar covers next year (Asia/Shanghai)",
                                value=int(snap.next_year_covered))
        current = GaugeMetricFamily("duban_current_period",
                                    "1 for the running year, quarter and month (Asia/Shanghai): alert rules join on it",
                                    labels=["kind", "period"])
        for kind, period in zip(("year", "quarter", "month"), snap.current_periods, strict=False):
            current.add_metric([kind, period], 1)
        yield current
        yield GaugeMetricFamily("duban_metrics_snapshot_timestamp_seconds",
                                "When the indicator figures on this endpoint were computed",
                                value=snap.taken_at.timestamp())
