"""`duban calendar …`: check calendar coverage before a year starts, count days by the counting rule."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import date
from functools import wraps

from duban.workcal.calendar import CalendarCoverageError, CalendarDataError, WorkingCalendar


def register(subparsers: argparse._SubParsersAction) -> None:
    calendar = subparsers.add_parser("calendar", help="working-day calendar: coverage and day counts")
    commands = calendar.add_subparsers(dest="calendar_command", required=True, metavar="COMMAND")

    coverage = commands.add_parser("coverage", help="list the years with holiday data and where it comes from")
    coverage.add_argument(
        "--require", type=int, action="append", default=[], metavar="YEAR",
        help="fail (exit 1) unless YEAR has official data (a provisional year does not count); repeatable",
    )
    coverage.set_defaults(handler=_coverage)

    days = commands.add_parser("days", help="working days and calendar days from START to END (START not counted)")
    days.add_argument("start", type=_civil_date, metavar="START")
    days.add_argument("end", type=_civil_date, metavar="END")
    days.set_defaults(handler=_days)


def _civil_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _reporting_calendar_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (CalendarCoverageError, CalendarDataError, FileNotFoundError) as error:
            print(f"duban calendar: {error}", file=sys.stderr)
            return 1

    return run


@_reporting_calendar_errors
def _coverage(args: argparse.Namespace) -> int:
    calendar = WorkingCalendar()
    for entry in calendar.coverage_report():
        if entry.provisional:
            print(f"{entry.year}  provisional: statutory holidays of {entry.notice}; no 补假, no 调休 until the notice")
            continue
        notice = f"  {entry.notice}" if entry.notice else ""
        correction = "  (corrects the package data)" if entry.overrides_package else ""
        print(f"{entry.year}  {entry.origin}{notice}{correction}")
    print(f"calendar data version: {calendar.version}")
    missing = [year for year in args.require if not calendar.is_covered(year)]
    for year in missing:
        reason = CalendarCoverageError(year)
        state = " (only provisional)" if calendar.is_provisional(year) else ""
        print(f"duban calendar: {reason}{state}", file=sys.stderr)
    return 1 if missing else 0


@_reporting_calendar_errors
def _days(args: argparse.Namespace) -> int:
    calendar = WorkingCalendar()
    print(f"working days: {calendar.working_days_between(args.start, args.end)}")
    print(f"calendar days: {max((args.end - args.start).days, 0)}")
    if years := calendar.provisional_between(args.start, args.end):
        print(f"provisional: {', '.join(map(str, years))} derived from the statutory holidays;"
              " 补假 and 调休 are not known until the State Council notice")
    return 0
