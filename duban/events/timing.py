"""Sane time: an event's instants must lie between a floor and a little past now.

The contracts admit any RFC 3339 date-time, and storage holds years 0001–9999, but neither a report
dated 9999-12-31 (it would stay the task's latest report for ever) nor one dated 1900 (before any
department system existed) tells the truth. Intake refuses such events and the consumers
dead-letter them, with the same rule: `time`, every date-time inside `data` (a case's opened_at, a
light's as_of…) and the year of an indicator's `period` lie within [floor, now + max skew].

"Now" is the one clock's (duban/clock.py): real time in production; on the demo's virtual clock the
department events carry virtual instants, and the window must follow it or it would refuse them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import cache, cached_property
from typing import Any

from duban.clock import now as one_clock_now
from duban.events.registry import CONTRACTS, FieldError

Path = tuple[str, ...]  # "*" stands for every item of an array


def _date_time_paths(schema: Mapping[str, Any], root: Mapping[str, Any], at: Path = ()) -> Iterator[Path]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        schema = root["$defs"][ref.removeprefix("#/$defs/")]
    if schema.get("format") == "date-time":
        yield at
    for name, sub in schema.get("properties", {}).items():
        yield from _date_time_paths(sub, root, (*at, name))
    if isinstance(schema.get("items"), Mapping):
        yield from _date_time_paths(schema["items"], root, (*at, "*"))


@cache
def _paths_of(event_type: str) -> tuple[Path, ...]:
    schema = CONTRACTS[event_type].schema
    return tuple(_date_time_paths(schema, schema))


def _values(value: Any, path: Path, at: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    for depth, part in enumerate(path):
        if part == "*":
            if isinstance(value, list):
                for index, item in enumerate(value):
                    yield from _values(item, path[depth + 1:], (*at, *path[:depth], index))
            return
        if not isinstance(value, dict) or part not in value:
            return
        value = value[part]
    yield (*at, *path), value


@dataclass(frozen=True)
class TimeWindow:
    """Instants before `floor` (a civil date, taken at 00:00 UTC) or more than `max_skew` past `clock()` are refused."""

    floor: date = date(2000, 1, 1)
    max_skew: timedelta = timedelta(minutes=5)
    clock: Callable[[], datetime] = field(default=one_clock_now, compare=False)

    @cached_property
    def _earliest(self) -> datetime:
        return datetime.combine(self.floor, time(), timezone.utc)

    def errors(self, event: Mapping[str, Any]) -> list[FieldError]:
        """Every instant of a contract-valid event that lies outside the window (empty when all are sane)."""
        paths = _paths_of(event["type"]) if event.get("type") in CONTRACTS else ()
        earliest = self._earliest
        latest = self.clock() + self.max_skew
        errors = []
        for path in paths:
            for at, text in _values(event, path):
                instant = datetime.fromisoformat(text) if isinstance(text, str) else None
                if instant is None or instant.tzinfo is None:
                    continue  # the contract check reports it
                if instant < earliest:
                    errors.append(FieldError(_pointer(at), f"{text} is before {self.floor.isoformat()}, the earliest"
                                                           " instant an event may carry"))
                elif instant > latest:
                    errors.append(FieldError(_pointer(at), f"{text} is more than {self.max_skew} ahead of the clock"
                                                           f" ({latest - self.max_skew:%Y-%m-%dT%H:%M:%SZ})"))
        data = event.get("data")
        period = data.get("period") if isinstance(data, dict) else None
        if isinstance(period, str) and period[:4].isdigit() and not self.floor.year <= int(period[:4]) <= latest.year:
            errors.append(FieldError("/data/period", f"year {period[:4]} is outside {self.floor.year}–{latest.year}"))
        return errors


def _pointer(parts: tuple[str | int, ...]) -> str:
    return "".join(f"/{part}" for part in parts)
