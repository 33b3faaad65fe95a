"""Who may say what: a department posts only as itself, and only about what the plan catalog gives it.

These rules apply to events that already passed their contract (validate_event), so the fields
they read are present and well-formed. The district office has no rights beyond its own: it
supervises, and an indicator report counts only from the department that feeds the indicator
(the metrics service dead-letters any other), so letting it post for others would let one key
forge every department's record (docs/decisions/006-intake-authentication.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from duban.catalog.models import Catalog
from duban.events.models import CASE_EVENTS, TASK_EVENTS, IndicatorValueReported
from duban.events.registry import Dispatch

SOURCE_PREFIX = "/departments/"


def refusal(catalog: Catalog, department: str, event: Mapping[str, Any]) -> str | None:
    """Why `department` may not post `event`, or None when it may."""
    own_source = SOURCE_PREFIX + department
    if event["source"] != own_source:
        return f"source {event['source']!r} is not yours: this key posts as {own_source!r}"
    rule = RULES.of(event["type"])
    if rule is None:
        return f"{event['type']} is not a department event"
    return rule.judge(catalog, department, rule.about(event))


def _task_refusal(catalog: Catalog, department: str, task_id: str) -> str | None:
    if catalog.may_report_task(department, task_id):
        return None
    task = catalog.task(task_id)
    responsible = ", ".join(task.responsible) or "none"
    return (f"{department} is neither lead nor responsible unit of {task_id}"
            f" (lead: {', '.join(task.lead)}; responsible: {responsible})")


def _case_refusal(catalog: Catalog, department: str, case_type: str) -> str | None:
    senders = catalog.case_type_departments(case_type)
    if department in senders:
        return None
    return f"{department} does not feed {case_type} cases (sent by {', '.join(sorted(senders))})"


def _indicator_refusal(catalog: Catalog, department: str, indicator_id: str) -> str | None:
    try:
        indicator = catalog.indicator(indicator_id)
    except KeyError:
        return f"no indicator {indicator_id!r} in the plan catalog"
    if indicator.feed.kind != "report":
        return f"{indicator_id} is computed from {indicator.feed.case_type} cases, not reported"
    if department not in indicator.feed.departments:
        return f"{department} does not report {indicator_id} (reported by {', '.join(indicator.feed.departments)})"
    return None


class Rule(NamedTuple):
    """What an event is about (a task or indicator id, or a case type), and who may speak of it."""

    about: Callable[[Mapping[str, Any]], str]
    judge: Callable[[Catalog, str, str], str | None]


def _subject(event: Mapping[str, Any]) -> str:
    return event["subject"]


def _case_type(event: Mapping[str, Any]) -> str:
    return event["data"]["case_type"]


RULES = Dispatch({**dict.fromkeys(TASK_EVENTS, Rule(_subject, _task_refusal)),
                  **dict.fromkeys(CASE_EVENTS, Rule(_case_type, _case_refusal)),
                  IndicatorValueReported: Rule(_subject, _indicator_refusal)})


class Referee:
    """`refusal` with its answers remembered per process. An answer depends only on the department,
    the event's source and type, and what the event is about (the task or indicator id, or the
    case type), and the catalog does not change while intake runs; a batch of 500 cases of one
    type is then judged once, not 500 times."""

    def __init__(self, catalog: Catalog, size: int = 10_000) -> None:
        self.catalog, self.size = catalog, size
        self._answers: dict[tuple[str, str, str, str], str | None] = {}

    def refusal(self, department: str, event: Mapping[str, Any]) -> str | None:
        type_ = event["type"]
        rule = RULES.of(type_)
        key = (department, event["source"], type_, rule.about(event) if rule else event["subject"])
        try:
            return self._answers[key]
        except KeyError:
            pass
        if len(self._answers) >= self.size:
            self._answers.clear()  # bounded by the catalog in practice; never unbounded
        answer = self._answers[key] = refusal(self.catalog, department, event)
        return answer
