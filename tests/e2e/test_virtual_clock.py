"""The whole system on a virtual clock at the demo's speed, as `make run` starts it: a task's light goes
green → yellow → red as plan time passes, with no event at all, and the overdue task's department gets
its notice in the mail catcher."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from duban.api_deps import PAGE_SIZE_MAX
from duban.mailcatcher import read_mail
from duban.scenario import SPEED, START
from tests.e2e.conftest import Launcher, bearer_token, wait_until

# From the plan's issue (2021-05-11) T07-M1, due 2021-06-30, turns yellow in mid-June and red on 1 July:
# at a plan-month a minute, about 70 and 100 real seconds after the clock starts.
PLAN_TIME_WAIT_S = 600


@pytest.fixture(scope="module")
def virtual_stack(tmp_path_factory):
    launcher = Launcher(tmp_path_factory.mktemp("run"), env={
        "DUBAN_CLOCK_START": START.isoformat(), "DUBAN_CLOCK_SPEED": str(SPEED)}).ready()
    yield launcher
    launcher.stop()


def test_a_light_changes_as_plan_time_passes_and_its_notice_is_delivered(virtual_stack):
    launcher = virtual_stack
    assert "Clock       virtual: 2021-05-11 08:00" in launcher.output()
    tracker, notifier = launcher.urls["tracker"], launcher.urls["notifier"]
    viewer = bearer_token(launcher.run_dir, "--role", "viewer")
    seen: list[str] = []

    def red_yet() -> bool:
        task = httpx.get(tracker + "/v1/tasks/T07", headers=viewer).json()
        if not seen or seen[-1] != task["light"]:
            seen.append(task["light"])
        return task["light"] == "red"

    wait_until(red_yet, PLAN_TIME_WAIT_S, "T07 to turn red on the virtual clock")
    assert seen == ["green", "yellow", "red"]
    task = httpx.get(tracker + "/v1/tasks/T07", headers=viewer).json()
    assert task["light_reason"] == "past_due" and task["light_as_of"] >= "2021-06-30T16:00:00Z"
    assert task["light_as_of"] < "2022", "lights are evaluated at the virtual instant, not the wall clock's"

    def t07_mail():
        return [m for m in read_mail(Path(launcher.run_dir) / "mail")
                if "T07" in m["Subject"] and m["To"].startswith("market-regulation@")]

    [first, *_] = wait_until(t07_mail, PLAN_TIME_WAIT_S, "a notice about T07 for market-regulation")
    # The lead department is urged (催办) when its task turns red, with the plan's date, not today's.
    assert first["Subject"].startswith("【催办】T07") and "截止日期：2021年6月30日" in first.get_content()
    department = bearer_token(launcher.run_dir, "--department", "market-regulation")
    sent = httpx.get(notifier + "/v1/deliveries", params={"status": "sent", "limit": PAGE_SIZE_MAX},
                     headers=department).json()
    assert any(d["item"].startswith("T07") and d["recipient"] == "email:market-regulation@departments.duban.test"
               for d in sent["items"])
