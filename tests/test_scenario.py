"""The demo's plan year (entrypoints/scenario.py): the same seed plays the same year; every event is one intake
takes from its department; progress only moves forward; cases are whole; each extension decision
follows its request; every "done" is verified (or returned) after it."""

from __future__ import annotations

from collections import defaultdict

from duban.catalog import load_catalog
from entrypoints.demo import cloudevent
from duban.events import validate_event
from entrypoints.scenario import START, AskExtension, DecideExtension, Report, Verify, event_id, judged, plan_year
from services.intake.domain.rules import refusal

CATALOG = load_catalog()
YEAR = plan_year()


def test_the_same_seed_plays_the_same_year_and_another_seed_another():
    assert plan_year() == YEAR
    assert [(s.at, s.action) for s in plan_year()] == [(s.at, s.action) for s in YEAR]
    assert [(s.at, s.action) for s in plan_year(seed=7)] != [(s.at, s.action) for s in YEAR]
    assert event_id(2021, 5) == event_id(2021, 5) != event_id(2021, 6)
    assert [s.at for s in YEAR] == sorted(s.at for s in YEAR)


def test_every_event_keeps_its_contract_and_comes_from_a_department_allowed_to_send_it():
    events = [cloudevent(step, event_id(2021, i)) for i, step in enumerate(YEAR) if isinstance(step.action, Report)]
    assert len(events) > 1000
    assert [(e["type"], e["subject"], validate_event(e)) for e in events if validate_event(e)] == []
    assert [(e["source"], e["type"], e["subject"]) for e in events
            if refusal(CATALOG, e["source"].removeprefix("/departments/"), e)] == []


def test_progress_only_moves_forward_and_every_task_reports():
    percents = defaultdict(list)
    for step in YEAR:
        if isinstance(step.action, Report) and step.action.type == "duban.task.progress-reported.v1":
            percents[step.action.subject].append(step.action.data["percent"])
    assert sorted(percents) == sorted(t.id for t in CATALOG.tasks)
    assert {task: p for task, p in percents.items() if p != sorted(p)} == {}
    done = {task for task, p in percents.items() if p[-1] == 100}
    assert "T08" not in done and len(done) >= 25, "the year-end tasks finish; T08's deadline is 2022-12-31"


def test_cases_open_before_anything_else_happens_to_them_and_close_last():
    lives = defaultdict(list)
    for step in YEAR:
        if isinstance(step.action, Report) and step.action.type.startswith("duban.case."):
            lives[step.action.subject].append((step.at, step.action.type.split(".")[2]))
    assert len(lives) > 300
    broken = {case: [kind for _, kind in life] for case, life in lives.items()
              if life[0][1] != "opened" or life[-1][1] != "closed" or [k for _, k in life].count("closed") != 1}
    assert broken == {}
    assert set(CATALOG.case_types) == {
        step.action.data["case_type"] for step in YEAR
        if isinstance(step.action, Report) and step.action.type == "duban.case.opened.v1"}


def test_each_extension_is_decided_after_it_was_asked_and_the_year_starts_at_the_plans_issue():
    asked = {(s.action.task, s.action.milestone): s.at for s in YEAR if isinstance(s.action, AskExtension)}
    decided = {(s.action.task, s.action.milestone): s.at for s in YEAR if isinstance(s.action, DecideExtension)}
    assert asked.keys() == decided.keys() == {("T07", "T07-M1"), ("T19", "T19-M1")}
    assert all(asked[key] < decided[key] for key in asked)
    assert START.date() == CATALOG.plan.issued
    tasks = [s for s in YEAR if isinstance(s.action, Report) and s.action.type.startswith("duban.task.")]
    assert min(s.at for s in tasks) > START, "no task reports before the plan was issued"


def test_every_done_is_judged_once_after_it_and_t16_is_returned_then_verified():
    """Each verification judges the last "done" of its item before it, which no other decision judged;
    every "done" of the year is judged."""
    open_dones, judgments = {}, []
    for step in YEAR:
        if (item := judged(step.action)) is not None:
            assert item not in open_dones, f"{item} reported done again while its last done awaits"
            open_dones[item] = step.at
        elif isinstance(step.action, Verify):
            item = (step.action.task, step.action.milestone)
            assert open_dones.get(item, step.at) < step.at, f"{item} judged at {step.at} with nothing done before"
            del open_dones[item]
            judgments.append((item, step.action.verified))
            assert step.action.verified or step.action.reason, "a return gives its reason"
    assert open_dones == {}, "every done of the year is judged"
    assert len(judgments) > 28
    assert [(item, ok) for item, ok in judgments if item == ("T16", None)] == [(("T16", None), False), (("T16", None), True)]
    assert [j for j in judgments if not j[1]] == [(("T16", None), False)]
