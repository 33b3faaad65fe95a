"""Provisional years: the statutory holidays of 《全国年节及纪念日放假办法》, derived by rule.

Used for a year that neither `chinese_calendar` nor an extension file covers (the State Council's
notice for it is not out yet). The law fixes the statutory days themselves; the yearly notice adds
what cannot be derived: the 补假 weekday for a statutory day on a weekend (Art. 6 leaves the day
to the notice) and the 调休 weekends worked (Art. 7). A provisional year guesses neither: its
statutory days are rest days, every other Monday–Friday is a working day and every weekend day a
rest day, and every answer that touches it says `provisional` (docs/calendar.md).

Lunar dates and the 清明 solar term come from `lunar_python` (decision 010).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

from lunar_python import Lunar, Solar

ORIGIN = "provisional (全国年节及纪念日放假办法)"


def _solar(lunar: Lunar) -> date:
    solar = lunar.getSolar()
    return date(solar.getYear(), solar.getMonth(), solar.getDay())


def _lunar_new_year(year: int) -> date:
    return _solar(Lunar.fromYmd(year, 1, 1))


def _qingming(year: int) -> date:
    # The solar-term table of the lunar year around mid-April holds that civil year's 清明.
    term = Solar.fromYmd(year, 4, 15).getLunar().getJieQiTable()["清明"]
    return date(term.getYear(), term.getMonth(), term.getDay())


def _days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]


@dataclass(frozen=True)
class RuleSet:
    """One version of the law: which days each holiday for all citizens takes in a year."""

    name: str
    in_force_from: int  # first year the version governs
    holidays: Callable[[int], dict[str, list[date]]]


def _rules_2013(year: int) -> dict[str, list[date]]:
    # 国务院令第644号 (2013-12-11, in force 2014-01-01): 11 days.
    return {
        "元旦": [date(year, 1, 1)],
        "春节": _days(_lunar_new_year(year), 3),  # 初一 to 初三
        "清明": [_qingming(year)],
        "劳动节": [date(year, 5, 1)],
        "端午": [_solar(Lunar.fromYmd(year, 5, 5))],
        "中秋": [_solar(Lunar.fromYmd(year, 8, 15))],
        "国庆": _days(date(year, 10, 1), 3),
    }


def _rules_2024(year: int) -> dict[str, list[date]]:
    # 国务院令第795号 (2024-11-10, in force 2025-01-01): 13 days; 除夕 and 2 May added.
    return _rules_2013(year) | {
        "春节": _days(_lunar_new_year(year) - timedelta(days=1), 4),  # 除夕 to 初三
        "劳动节": _days(date(year, 5, 1), 2),
    }


RULE_SETS = (
    RuleSet("全国年节及纪念日放假办法 (2013)", 2014, _rules_2013),
    RuleSet("全国年节及纪念日放假办法 (2024)", 2025, _rules_2024),
)


def rule_set_for(year: int) -> RuleSet:
    """The version of the law in force in `year`; years before 2014 are not derived."""
    applicable = [rules for rules in RULE_SETS if rules.in_force_from <= year]
    if not applicable:
        raise ValueError(f"no provisional rules for {year}: the earliest version derived here governs 2014 on")
    return applicable[-1]


def statutory_holidays(year: int) -> dict[str, list[date]]:
    """Each holiday's statutory days in `year`, under the version of the law in force then."""
    return rule_set_for(year).holidays(year)
