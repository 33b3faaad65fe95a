"""A real Prometheus (Debian's binary) for the tests: scrape given targets with the project's rules."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from tests.conftest import ROOT, free_port

RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))


def wait_for(what: str, probe, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if result := probe():
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def running_prometheus(jobs: dict[str, list[str]], workdir: Path, *, rule_files: list[Path] = RULE_FILES,
                       alertmanager: str | None = None) -> Iterator[str]:
    """Prometheus scraping each job's targets every second with the rule files (by default the project's),
    sending alerts to `alertmanager` (host:port) when given; yields its URL."""
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(path) for path in rule_files],
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                                 for job, targets in jobs.items()]}
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        ["prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus to be ready", lambda: httpx.get(url + "/-/ready").status_code == 200)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def query(url: str, expr: str) -> list:
    body = httpx.get(url + "/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def unhealthy_rules(url: str) -> list[tuple[str, str]]:
    groups = httpx.get(url + "/api/v1/rules").json()["data"]["groups"]
    return [(r["name"], r["lastError"]) for g in groups for r in g["rules"] if r["health"] != "ok"]


def alert_states(url: str) -> dict[tuple[str, str | None], str]:
    """Each active alert's state: "pending" until its `for` has passed, then "firing"."""
    return {(a["labels"]["alertname"], a["labels"].get("indicator")): a["state"]
            for a in httpx.get(url + "/api/v1/alerts").json()["data"]["alerts"]}


def firing_or_pending(url: str) -> set[tuple[str, str | None]]:
    return {(a["labels"]["alertname"], a["labels"].get("indicator"))
            for a in httpx.get(url + "/api/v1/alerts").json()["data"]["alerts"]}
