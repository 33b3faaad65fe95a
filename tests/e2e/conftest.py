"""The whole system started the way `make run` starts it, once per test module."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, free_port_block


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
    base_port, kafka_port = free_port_block(4), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "duban.cli", "run", "--no-demo", "--run-dir", str(run_dir),
         "--base-port", str(base_port), "--kafka-port", str(kafka_port), "--mail-port", str(free_port())],
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


def post(urls: dict[str, str], key: str, events: list[dict]) -> httpx.Response:
    return httpx.post(urls["intake"] + "/v1/events", json=events,
                      headers={"content-type": "application/cloudevents-batch+json", "authorization": f"Bearer {key}"})
