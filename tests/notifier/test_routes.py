"""Every department reaches someone in every local shape, and one that does not is said out loud:
at start (a warning and a gauge) and by `duban routes check`."""

from __future__ import annotations

import subprocess
import sys

import yaml
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.notifier.app import report_unrouted
from services.notifier.routes import Routes, RoutesFile, local_routes
from services.notifier.settings import NotifierSettings
from tests.conftest import ROOT
from tests.notifier.conftest import CATALOG, write_routes

COMPOSE_ROUTES = ROOT / "deploy" / "notifier" / "routes.local.yaml"
UNITS = {d.code for d in CATALOG.departments if d.kind == "unit"}


def local() -> Routes:
    return Routes(RoutesFile.model_validate(local_routes(CATALOG)))


def duban(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "entrypoints.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_the_local_routes_reach_every_department_by_mail():
    routes = local()
    assert routes.unrouted(CATALOG) == []
    for code in UNITS:
        [target] = routes.targets(code, 3)
        assert target.channel == "email" and target.address == f"{code}@departments.duban.test"


def test_docker_compose_routes_every_department_to_mailpit():
    assert yaml.safe_load(COMPOSE_ROUTES.read_text(encoding="utf-8")) == local_routes(CATALOG)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    notifier = compose["services"]["notifier"]
    assert notifier["environment"]["DUBAN_SMTP_HOST"] == "mailpit"
    mount = f"./{COMPOSE_ROUTES.relative_to(ROOT)}:{notifier['environment']['DUBAN_NOTIFIER_ROUTES']}:ro"
    assert mount in notifier["volumes"]


def test_unrouted_departments_are_a_warning_and_a_gauge_at_start(tmp_path):
    path = write_routes(tmp_path, {"health": [{"channel": "email", "to": ["office@health.gulou.gov.cn"]}]})
    with capture_logs() as logs:
        unrouted = report_unrouted(Routes.load(path, CATALOG), CATALOG, NotifierSettings(notifier_routes=path))
    assert set(unrouted) == UNITS - {"health"}
    assert REGISTRY.get_sample_value("duban_notifier_unrouted_departments") == len(UNITS) - 1
    [warning] = [entry for entry in logs if entry["event"].startswith("departments without a route")]
    assert warning["log_level"] == "warning" and set(warning["departments"]) == UNITS - {"health"}
    assert report_unrouted(local(), CATALOG, NotifierSettings()) == []
    assert REGISTRY.get_sample_value("duban_notifier_unrouted_departments") == 0


def test_routes_check_lists_the_unrouted_and_fails_on_a_bad_file(tmp_path):
    assert duban("routes", "check", "--routes", str(COMPOSE_ROUTES)).returncode == 0
    partial = write_routes(tmp_path, {"health": [{"channel": "email", "to": ["office@health.gulou.gov.cn"]}]})
    checked = duban("routes", "check", "--routes", str(partial))
    listed = {line.split("\t")[0] for line in checked.stdout.splitlines()}
    assert checked.returncode == 1 and listed == UNITS - {"health"}
    assert "区教育局" in checked.stdout and f"{len(UNITS) - 1} of {len(UNITS)} departments unrouted" in checked.stderr
    broken = write_routes(tmp_path, {"no-such-unit": [{"channel": "email", "to": ["a@b.cn"]}]})
    refused = duban("routes", "check", "--routes", str(broken))
    assert refused.returncode == 2 and "no-such-unit" in refused.stderr
