"""The whole system started the way `make run` starts it, once per test module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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


class Launcher:
    """`duban run` as `make run` starts it, on ports and a run directory of its own; its output is
    collected as it comes (the launcher reports what it supervises there)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        base_port, kafka_port = free_port_block(5), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "duban.cli", "run", "--no-demo", "--run-dir", str(run_dir),
             "--base-port", str(base_port), "--kafka-port", str(kafka_port), "--mail-port", str(free_port())],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()
        self.urls = {name: f"http://127.0.0.1:{base_port + offset}"
                     for name, offset in (("intake", 1), ("tracker", 2), ("metrics", 3), ("notifier", 4),
                                             ("board", 5))}

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_output(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            if time.monotonic() > deadline or (self.process.poll() is not None and not self.reader.is_alive()):
                logs = "".join(p.read_text(errors="replace")[-3000:] for p in Path(self.run_dir).glob("*.log"))
                raise AssertionError(f"the launcher did not say {text!r}:\n{self.output()}{logs}")
            time.sleep(0.1)

    def ready(self) -> Launcher:
        self.wait_for_output("Duban is running", 240)
        return self

    @property
    def database_url(self) -> str:
        return next(line.split()[1] for line in self.lines if line.startswith("PostgreSQL "))

    def stop(self) -> None:
        """As Ctrl-C does; SIGKILL only if that does not end it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    launcher = Launcher(tmp_path_factory.mktemp("run")).ready()
    yield launcher.process, launcher.urls, launcher.run_dir, launcher.database_url
    launcher.stop()


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


def bearer_token(run_dir: Path, *options: str) -> dict[str, str]:
    """A token made the way a person gets one locally: `duban tokens issue`, with the key pair `duban run` trusts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")}
    issued = subprocess.run([sys.executable, "-m", "duban.cli", "tokens", "issue", *options], cwd=ROOT,
                            env=dict(env, DUBAN_DATA_DIR=str(run_dir)), capture_output=True, text=True, timeout=60,
                            check=True)
    return {"authorization": f"Bearer {issued.stdout.strip()}"}


def post(urls: dict[str, str], key: str, events: list[dict]) -> httpx.Response:
    return httpx.post(urls["intake"] + "/v1/events", json=events,
                      headers={"content-type": "application/cloudevents-batch+json", "authorization": f"Bearer {key}"})
