"""docker-compose.yml: valid against the compose specification's JSON schema, and consistent with
the code (ports, settings) and with the Kubernetes ConfigMap."""

from __future__ import annotations

import json
import re
import shlex
from importlib import resources

import pytest

from entrypoints.cli import build_parser
from tests.deploy.conftest import K8S, ROOT, SERVICES, default_port, known_env_names, kustomize

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
ONE_SHOT = {"init"}


def test_validates_against_the_compose_spec_schema(compose):
    """The schema is the compose-spec project's own, as vendored by check-jsonschema (no network)."""
    from jsonschema import Draft7Validator

    schema = json.loads(resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
                        .read_text(encoding="utf-8"))
    errors = sorted(Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_every_service_has_an_image_and_the_long_running_ones_a_healthcheck(compose):
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_third_party_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image}"
        if "build" not in service:
            assert re.search(r"\d+\.\d+", tag), f"{name}: {image} names no version"


def test_depends_on_names_services_with_valid_conditions(compose):
    services = compose["services"]
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert condition["condition"] in CONDITIONS
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health, which has no check"
            if condition["condition"] == "service_completed_successfully":
                assert target in ONE_SHOT


def test_duban_services_wait_for_init_and_check_readyz_on_their_default_port(compose):
    for name in SERVICES:
        service = compose["services"][name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
        port = default_port(name)
        assert service["ports"] == [f"{port}:{port}"]
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["read_only"] is True
        assert service["environment"]["DUBAN_DATA_DIR"] in service["tmpfs"]
        assert int(service["stop_grace_period"].rstrip("s")) >= 30


def test_init_exports_the_token_key_creates_topics_then_migrates_with_real_commands(compose):
    init = compose["services"]["init"]
    assert init["command"][:2] == ["sh", "-c"]
    steps = [shlex.split(step.split(">")[0]) for step in init["command"][2].split("&&")]
    # The public key for the services, the board's own token (tests/deploy/test_token_keys.py), topics, migrations.
    assert [s[:3] for s in steps] == [["duban", "tokens", "keys"], ["duban", "tokens", "issue"],
                                      ["duban", "topics", "create"], ["duban", "migrate"]]
    for step in steps:
        build_parser().parse_args(step[1:])
    assert {"postgres", "kafka"} <= set(init["depends_on"])


def test_same_settings_as_kubernetes_and_all_of_them_real(compose):
    docs = kustomize(K8S / "base")
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    secret_names = {"DUBAN_DATABASE_URL"}
    known = known_env_names()
    # Beyond the shared settings, a service may set its own (the notifier's mail relay), in both places.
    own = {d["metadata"]["name"]: {e["name"] for c in d["spec"]["template"]["spec"]["containers"]
                                   for e in c.get("env", ())} - secret_names
           for d in docs if d["kind"] == "Deployment"}
    # The notifier's routes file is a file of the deployment's own (compose mounts the local one), and
    # so is the token key (compose: init's export; Kubernetes: each overlay's, test_token_keys.py).
    deployment_own = {"DUBAN_NOTIFIER_ROUTES", "DUBAN_AUTH_PUBLIC_KEY_FILE"}
    for name in [*SERVICES, "init"]:
        env = compose["services"][name]["environment"]
        assert set(env) - deployment_own == (set(configmap["data"]) | secret_names | own.get(name, set())) - deployment_own, name
        assert set(env) <= known, f"{name}: {set(env) - known} are read by no settings class"
    env = compose["services"]["intake"]["environment"]
    assert env["DUBAN_KAFKA_ENABLE_IDEMPOTENCE"] == "true", "Apache Kafka has the idempotent producer"
    assert env["DUBAN_KAFKA_BOOTSTRAP"].split(":")[0] == "kafka"
    assert env["DUBAN_DATABASE_URL"].split("@")[1].startswith("postgres:5432/")


def test_kafka_runs_kraft_without_auto_created_topics(compose):
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    bootstrap = compose["services"]["intake"]["environment"]["DUBAN_KAFKA_BOOTSTRAP"]
    assert f"//{bootstrap}" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_prometheus_and_grafana_mount_the_repository_configuration(compose):
    volumes = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["prometheus"]["volumes"]}
    assert volumes["/etc/prometheus"] == "./deploy/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in compose["services"]["prometheus"]["command"]
    grafana = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    assert grafana["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    for source in [*volumes.values(), *grafana.values()]:
        if source.startswith("./"):
            assert (ROOT / source).is_dir(), f"{source} is mounted but missing"
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    if config.exists():  # the scrape targets use the compose service names and default ports
        text = config.read_text(encoding="utf-8")
        for name in SERVICES:
            assert f"{name}:{default_port(name)}" in text


def test_an_smtp_sink_for_the_notifier(compose):
    mailpit = compose["services"]["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit:")
    assert "1025:1025" in mailpit["ports"]
