"""Instants as the tracker writes them and civil dates as supervision counts them."""

from __future__ import annotations

from datetime import date, datetime, timezone

from duban.workcal import to_shanghai


def utc(moment: datetime) -> str:
    """Tracker events carry instants in UTC with a Z (docs/contracts.md)."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def civil_date(moment: datetime) -> date:
    """The Asia/Shanghai date of an instant: deadlines and working days are counted in civil dates."""
    return to_shanghai(moment).date()
