"""The whole system through the launcher of `make run`: an event posted to intake shows up in the
tracker's API and on the metrics endpoint, and stopping leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, free_port


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    base_port, kafka_port = free_port() // 10 * 10 % 50000 + 10000, free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "duban.cli", "run", "--no-demo", "--run-dir", str(run_dir),
         "--base-port", str(base_port), "--kafka-port", str(kafka_port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    for line in launcher.stdout:
        lines.append(line)
        if "Duban is running" in line:
            break
    else:
        logs = "".join(p.read_text(errors="replace")[-3000:] for p in Path(run_dir).glob("*.log"))
        raise AssertionError("launcher exited before the system was ready:\n" + "".join(lines) + logs)
    urls = {name: f"http://127.0.0.1:{base_port + offset}"
            for name, offset in (("intake", 1), ("tracker", 2), ("metrics", 3), ("notifier", 4))}
    database_url = next(line.split()[1] for line in lines if line.startswith("PostgreSQL "))
    yield launcher, urls, run_dir, database_url
    if launcher.poll() is None:
        launcher.kill()


def progress_event(task_id: str, department: str, percent: int) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"/departments/{department}",
            "type": "duban.task.progress-reported.v1", "subject": task_id,
            "time": datetime.now(timezone.utc).isoformat(), "datacontenttype": "application/json",
            "data": {"status": "in_progress", "percent": percent, "note": "企业开办一表填报已上线"}}


def department_key(database_url: str, department: str) -> str:
    """A key made the way an operator makes one: `duban keys create`, which prints only the token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    created = subprocess.run([sys.executable, "-m", "duban.cli", "keys", "create", department],
                             cwd=ROOT, env=dict(env, DUBAN_DATABASE_URL=database_url),
                             capture_output=True, text=True, timeout=60, check=True)
    return created.stdout.strip()


def test_every_service_is_ready(stack):
    _launcher, urls, _run_dir, _database_url = stack
    for name, url in urls.items():
        response = httpx.get(url + "/readyz")
        assert response.status_code == 200, (name, response.text)
        assert httpx.get(url + "/healthz").status_code == 200


def test_event_flows_from_intake_to_tracker_and_metrics(stack):
    _launcher, urls, _run_dir, database_url = stack
    event = progress_event("T07", "market-regulation", 60)
    response = httpx.post(urls["intake"] + "/v1/events", json=event,
                          headers={"content-type": "application/cloudevents+json",
                                   "authorization": f"Bearer {department_key(database_url, 'market-regulation')}"})
    assert response.status_code == 202, response.text
    assert event["id"] in response.json()["accepted"]

    def tracker_has_it():
        task = httpx.get(urls["tracker"] + "/v1/tasks/T07").json()
        return task if task["percent"] == 60 and task["status"] == "in_progress" else None

    task = wait_until(tracker_has_it, 15, "the tracker to apply the event")
    assert task["last_reporter"] == "/departments/market-regulation"
    assert [h["event_id"] for h in task["history"]] == [event["id"]]

    listed = httpx.get(urls["tracker"] + "/v1/tasks", params={"area": "A3", "status": "in_progress"}).json()
    assert [t["id"] for t in listed["items"]] == ["T07"]

    # T07's milestones fell due in 2021, so the tracker lights it red (DESIGN §5: past due, not done).
    wait_until(lambda: 'duban_tasks{area="A3",light="red",status="in_progress"} 1.0'
               in httpx.get(urls["metrics"] + "/metrics").text, 15, "metrics to count the task")


def test_stopping_leaves_no_process_behind(stack):
    launcher, _urls, run_dir, _database_url = stack
    family = psutil.Process(launcher.pid).children(recursive=True)
    # The embedded PostgreSQL runs detached (pg_ctl), so it is no child: follow it by its pid file.
    postmaster = psutil.Process(int((Path(run_dir) / "pg" / "postmaster.pid").read_text().split()[0]))
    assert len(family) >= 5  # the broker and four services at least
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(60) == 0
    _gone, alive = psutil.wait_procs([*family, postmaster], timeout=10)
    assert alive == [], [p.pid for p in alive]
