"""The one clock (duban/clock.py): real by default; a virtual clock shows the same instant in every
process configured alike, runs at its speed, and the event-time window follows it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from duban.clock import Clock
from duban.settings import ServiceSettings
from tests.conftest import ROOT

START = datetime(2021, 5, 11, 8, 0, tzinfo=timezone(timedelta(hours=8)))
EPOCH = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)

# Prints what the process's own clock (read from its environment) shows at a given real instant, and now.
SHOW = ("import sys, datetime; from duban.clock import now, process_clock;"
        " print(process_clock().at(datetime.datetime.fromisoformat(sys.argv[1])).isoformat()); print(now().isoformat())")


def shown_by_a_process(env: dict[str, str], real: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    """(what it shows at `real`, now before it started, what it says now, now after it ended), by its clock."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    before = datetime.now(timezone.utc)
    out = subprocess.run([sys.executable, "-c", SHOW, real.isoformat()], env=base | env, cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
    after = datetime.now(timezone.utc)
    return datetime.fromisoformat(out[0]), before, datetime.fromisoformat(out[1]), after


def test_the_clock_is_real_time_unless_configured():
    before = datetime.now(timezone.utc)
    shown = Clock().now()
    assert before <= shown <= datetime.now(timezone.utc)
    assert ServiceSettings().time_source == Clock()
    at, real_before, now, real_after = shown_by_a_process({}, EPOCH)
    assert at == EPOCH and real_before <= now <= real_after


def test_two_processes_given_the_same_epoch_show_the_same_instant():
    epoch = datetime.now(timezone.utc)
    env = {"DUBAN_CLOCK_START": START.isoformat(), "DUBAN_CLOCK_SPEED": "43200", "DUBAN_CLOCK_EPOCH": epoch.isoformat()}
    real = epoch + timedelta(minutes=3)
    first, *_ = shown_by_a_process(env, real)
    second, before, now, after = shown_by_a_process(env, real)  # started later, agrees all the same
    assert first == second == START + timedelta(days=90)
    clock = Clock(START, 43200, epoch)
    assert clock.at(before) <= now <= clock.at(after)


def test_a_virtual_clock_runs_at_its_speed_from_its_start():
    clock = Clock(START, speed=60, epoch=EPOCH)
    assert clock.at(EPOCH) == START
    assert clock.at(EPOCH + timedelta(seconds=10)) == START + timedelta(minutes=10)
    assert clock.at(EPOCH - timedelta(hours=1)) == START, "before its epoch the clock holds at its start"
    assert clock.real_seconds(600) == 10
    held = Clock(START, speed=0)
    assert held.now() == held.at(EPOCH + timedelta(days=400)) == START


def test_a_clock_processes_could_disagree_on_is_refused():
    with pytest.raises(ValidationError, match="DUBAN_CLOCK_EPOCH"):
        ServiceSettings(clock_start=START, clock_speed=2)
    with pytest.raises(ValidationError):
        ServiceSettings(clock_start=START, clock_speed=-1, clock_epoch=EPOCH)
    assert ServiceSettings(clock_start=START, clock_speed=0).clock() == START


def progress_at(instant: datetime) -> dict:
    return {"specversion": "1.0", "id": "5b0e7bb4-2d4f-4a47-9d0b-8a4c1e0f7a10", "source": "/departments/market-regulation",
            "type": "duban.task.progress-reported.v1", "subject": "T07", "time": instant.isoformat(),
            "datacontenttype": "application/json", "data": {"status": "in_progress", "percent": 30}}


def test_the_event_time_window_follows_the_clock():
    virtual = ServiceSettings(clock_start=START, clock_speed=0).time_window()
    assert virtual.errors(progress_at(START - timedelta(days=3))) == []
    assert virtual.errors(progress_at(START + timedelta(minutes=4))) == [], "within the skew"
    [refused] = virtual.errors(progress_at(START + timedelta(hours=1)))
    assert refused.path == "/time" and "ahead of the clock" in refused.message
    # On the real clock a 2021 report is history, and one an hour ahead of the real now is refused.
    real = ServiceSettings().time_window()
    assert real.errors(progress_at(START)) == []
    assert real.errors(progress_at(datetime.now(timezone.utc) + timedelta(hours=1)))
