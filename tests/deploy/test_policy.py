"""checkov, the policy scanner, over the production overlay as `kubectl kustomize` renders it: every
check passes except the ones deploy/k8s/policy/checkov.yaml skips, each with its reason there."""

from __future__ import annotations

import json
import subprocess

import yaml

from tests.deploy.conftest import K8S, ROOT, kustomize

CHECKOV = ROOT / ".venv-policy" / "bin" / "checkov"  # `make test` installs it (deploy/k8s/policy/checkov.lock)
CONFIG = K8S / "policy" / "checkov.yaml"


def scan(directory) -> dict:
    done = subprocess.run([str(CHECKOV), "--config-file", str(CONFIG), "-d", str(directory), "-o", "json"],
                          capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_passes_over_the_rendered_production_overlay(tmp_path):
    docs = kustomize(K8S / "overlays" / "production")
    assert CHECKOV.exists(), "checkov is missing: `make .venv-policy/.synced` (make test does it)"
    (tmp_path / "production.yaml").write_text(yaml.safe_dump_all(docs, allow_unicode=True), encoding="utf-8")
    report = scan(tmp_path)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0 and summary["resource_count"] >= len(docs) - 5, summary
    failed = [f"{c['check_id']} {c['check_name']}: {c['resource']}" for c in report["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    assert summary["passed"] > 100


def test_every_skipped_check_has_its_reason():
    lines = CONFIG.read_text(encoding="utf-8").splitlines()
    skipped = yaml.safe_load("\n".join(lines))["skip-check"]
    for check in skipped:
        index = lines.index(f"  - {check}")
        assert lines[index - 1].strip().startswith("#"), f"{check} is skipped without a reason above it"


def test_checkov_finds_what_it_is_there_to_find(tmp_path):
    """A privileged container is caught: the scan is not vacuous."""
    assert CHECKOV.exists()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "duban"},
           "spec": {"containers": [{"name": "bad", "image": "registry.duban.internal/duban:0.1.0",
                                    "securityContext": {"privileged": True}}]}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(pod), encoding="utf-8")
    failed = {c["check_id"] for c in scan(tmp_path)["results"]["failed_checks"]}
    assert "CKV_K8S_16" in failed  # "Container should not be privileged"
