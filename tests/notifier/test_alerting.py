"""The pipeline's own alerts reach someone: the Alertmanager configuration is valid, and an alert
fired by a real Prometheus from a real scrape goes through a real Alertmanager to a real receiver."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.conftest import ROOT, free_port
from tests.prometheus import RULE_FILES, running_prometheus, wait_for

ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def test_the_deployed_configuration_passes_amtool():
    checked = subprocess.run(["amtool", "check-config", str(ALERTMANAGER_CONFIG)], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr


def test_prometheus_points_at_alertmanager():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    [manager] = config["alerting"]["alertmanagers"]
    assert manager["static_configs"][0]["targets"] == ["alertmanager:9093"]


@contextlib.contextmanager
def running_alertmanager(receiver_url: str, workdir: Path) -> Iterator[str]:
    """Debian's Alertmanager with the deployed routing tree, its receivers' mail swapped for a webhook to
    `receiver_url` and the waits shortened; yields host:port."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config["route"].update(group_wait="0s", group_interval="1s")
    config["receivers"] = [{"name": r["name"], "webhook_configs": [{"url": receiver_url, "send_resolved": True}]}
                           for r in config["receivers"]]
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={workdir / 'alertmanager.yml'}", f"--storage.path={workdir / 'am'}",
         f"--web.listen-address={address}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("Alertmanager to be ready", lambda: httpx.get(f"http://{address}/-/ready").status_code == 200)
        yield address
    finally:
        server.terminate()
        server.wait(30)


def rule_without_wait(name: str, workdir: Path) -> Path:
    """The project's rule `name` as written, but firing without its `for` wait."""
    [rule] = [r for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
              for r in group["rules"] if r.get("alert") == name]
    path = workdir / "rule.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "under-test", "rules": [{**rule, "for": "0s"}]}]}))
    return path


def test_a_dead_notice_alert_reaches_the_operators_receiver(tmp_path, http_receiver):
    # A notifier's /metrics with one dead e-mail notice, served over HTTP for Prometheus to scrape.
    registry = CollectorRegistry()
    Gauge("duban_notifier_dead_deliveries", "dead", ["channel"], registry=registry).labels("email").set(1)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        with running_alertmanager(http_receiver.url + "/alerts", tmp_path) as alertmanager, \
                running_prometheus({"duban-notifier": [f"127.0.0.1:{port}"]}, tmp_path,
                                   rule_files=[rule_without_wait("NotifierDeadDeliveries", tmp_path)],
                                   alertmanager=alertmanager):
            notification = wait_for("the alert at the receiver", lambda: http_receiver.bodies("/alerts"), 90)[0]
    finally:
        server.shutdown()
        thread.join()
    assert notification["receiver"] == "operators" and notification["status"] == "firing"
    [alert] = notification["alerts"]
    assert alert["labels"]["alertname"] == "NotifierDeadDeliveries" and alert["labels"]["channel"] == "email"
    assert alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["runbook_url"] == "docs/runbooks/notifier-dead-deliveries.md"
    assert "email notice(s) given up" in alert["annotations"]["summary"]
