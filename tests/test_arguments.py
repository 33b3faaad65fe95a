"""The argparse types the commands share: `duban tokens issue --hours`, `duban keys rotate --grace-hours`."""

from __future__ import annotations

import argparse

import pytest

from duban.arguments import hours


def parse(kind, text: str) -> float:
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--hours", type=kind)
    return parser.parse_args(["--hours", text]).hours


@pytest.mark.parametrize("text, value", [("0.5", 0.5), ("8784", 8784.0)])
def test_a_token_lives_more_than_no_time_and_at_most_a_leap_year(text, value):
    assert parse(hours(0, 24 * 366, low_included=False), text) == value


@pytest.mark.parametrize("text", ["0", "-1", "8784.5", "nan", "inf", "soon"])
def test_a_token_lifetime_outside_those_bounds_is_refused(text):
    with pytest.raises(argparse.ArgumentError):
        parse(hours(0, 24 * 366, low_included=False), text)


@pytest.mark.parametrize("text, value", [("0", 0.0), ("24", 24.0), ("1e6", 1e6)])
def test_a_grace_period_is_any_number_of_hours_from_zero(text, value):
    assert parse(hours(0), text) == value


@pytest.mark.parametrize("text", ["-0.5", "nan"])
def test_a_negative_grace_period_is_refused(text):
    with pytest.raises(argparse.ArgumentError, match="hours must be at least 0"):
        parse(hours(0), text)
