"""The whole system through the launcher of `make run`: an event posted to intake shows up in the
tracker's API and on the metrics endpoint, and stopping leaves no process behind."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import psutil

from entrypoints.mailcatcher import read_mail
from tests.e2e.conftest import bearer_token, department_key, progress_event, wait_until


def test_every_service_is_ready(stack):
    _launcher, urls, _run_dir, _database_url = stack
    for name, url in urls.items():
        response = httpx.get(url + "/readyz")
        assert response.status_code == 200, (name, response.text)
        assert httpx.get(url + "/healthz").status_code == 200


def test_every_service_wants_credentials_and_trusts_the_embedded_key(stack):
    _launcher, urls, run_dir, _database_url = stack
    viewer = bearer_token(run_dir, "--role", "viewer")
    for name, path in (("tracker", "/v1/tasks"), ("metrics", "/v1/indicators"), ("notifier", "/v1/escalations")):
        assert httpx.get(urls[name] + path).status_code == 401, name
        assert httpx.get(urls[name] + path, headers=viewer).status_code == 200, name
    assert httpx.post(urls["intake"] + "/v1/events", json={}).status_code == 401
    # Intake takes a department's token as well as its key; a viewer does not report.
    refused = httpx.post(urls["intake"] + "/v1/events", json=progress_event("T07", "market-regulation", 10),
                         headers={"content-type": "application/cloudevents+json", **viewer})
    assert refused.status_code == 403


def test_event_flows_from_intake_to_tracker_and_metrics(stack):
    _launcher, urls, run_dir, database_url = stack
    event = progress_event("T07", "market-regulation", 60)
    response = httpx.post(urls["intake"] + "/v1/events", json=event,
                          headers={"content-type": "application/cloudevents+json",
                                   "authorization": f"Bearer {department_key(database_url, 'market-regulation')}"})
    assert response.status_code == 202, response.text
    assert event["id"] in response.json()["accepted"]

    viewer = bearer_token(run_dir, "--role", "viewer")
    anonymous = httpx.get(urls["tracker"] + "/v1/tasks/T07")
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"

    def tracker_has_it():
        task = httpx.get(urls["tracker"] + "/v1/tasks/T07", headers=viewer).json()
        return task if task["percent"] == 60 and task["status"] == "in_progress" else None

    task = wait_until(tracker_has_it, 15, "the tracker to apply the event")
    assert task["last_reporter"] == "/departments/market-regulation"
    history = httpx.get(urls["tracker"] + "/v1/tasks/T07/history", headers=viewer).json()
    assert [h["event_id"] for h in history["items"]] == [event["id"]]

    listed = httpx.get(urls["tracker"] + "/v1/tasks", params={"area": "A3", "status": "in_progress"},
                       headers=viewer).json()
    assert [t["id"] for t in listed["items"]] == ["T07"]

    # T07's milestones fell due in 2021, so the tracker lights it red (DESIGN §5: past due, not done).
    wait_until(lambda: 'duban_tasks{area="A3",light="red",status="in_progress"} 1.0'
               in httpx.get(urls["metrics"] + "/metrics").text, 15, "metrics to count the task")

    def tasks_counted() -> float:
        lines = httpx.get(urls["metrics"] + "/metrics").text.splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("duban_tasks{"))

    # Every task of the plan is counted, reported on or not (the tracker announces each first light).
    wait_until(lambda: tasks_counted() == 28, 15, "metrics to count all 28 tasks")


def test_overdue_work_reaches_the_departments_by_mail(stack):
    _launcher, urls, run_dir, _database_url = stack
    mail_dir = Path(run_dir) / "mail"
    # The plan's 2021 deadlines have passed: the notifier urges the lead departments, whose notices the
    # launcher's generated routes send to its mail catcher, one .eml each, at any hour.
    [first, *_] = wait_until(lambda: read_mail(mail_dir), 90, "a notice in the mail catcher")
    assert first["To"].endswith("@departments.duban.test") and first["Message-ID"]
    assert first["Subject"].startswith("【") and "截止日期" in first.get_content()
    sent = httpx.get(urls["notifier"] + "/v1/deliveries", params={"status": "sent"},
                     headers=bearer_token(run_dir, "--role", "viewer")).json()["items"]
    assert sent and all(d["channel"] == "email" for d in sent)
    assert "duban_notifier_unrouted_departments 0.0" in httpx.get(urls["notifier"] + "/metrics").text


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
