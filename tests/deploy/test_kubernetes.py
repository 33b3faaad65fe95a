"""The Kubernetes manifests (deploy/k8s), as `kubectl kustomize` renders each overlay."""

from __future__ import annotations

import shlex

import pytest

from duban.cli import build_parser
from tests.deploy.conftest import (K8S, SERVICES, default_port, known_env_names, kustomize, of_kind, pod_specs,
                                   service_of)


def config(docs: list[dict]) -> dict[str, str]:
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("duban-config")]
    return configmap["data"]


def test_base_renders_too():
    assert {d["kind"] for d in kustomize(K8S / "base")} >= {"Namespace", "ConfigMap", "Deployment", "Service",
                                                           "PodDisruptionBudget", "HorizontalPodAutoscaler",
                                                           "NetworkPolicy"}


def test_one_deployment_and_service_per_service(overlay):
    _, docs = overlay
    deployments = of_kind(docs, "Deployment")
    assert sorted(service_of(d) for d in deployments.values()) == sorted(SERVICES)
    services = of_kind(docs, "Service")
    for deployment in deployments.values():
        name = service_of(deployment)
        # Same name and port as in docker-compose, so deploy/prometheus/prometheus.yml's targets hold in both.
        assert name in services
        assert services[name]["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert [p["port"] for p in services[name]["spec"]["ports"]] == [default_port(name)]


def test_probes_hit_the_right_paths_on_the_settings_default_port(overlay):
    _, docs = overlay
    for deployment in of_kind(docs, "Deployment").values():
        name = service_of(deployment)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": default_port(name)}, name

        def probe_target(probe: str) -> tuple[str, int]:
            get = container[probe]["httpGet"]
            return get["path"], ports.get(get["port"], get["port"])

        assert probe_target("livenessProbe") == ("/healthz", default_port(name)), name
        assert probe_target("readinessProbe") == ("/readyz", default_port(name)), name
        assert probe_target("startupProbe")[1] == default_port(name), name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == default_port(name)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_every_container_has_requests_and_limits(overlay):
    _, docs = overlay
    for where, spec in pod_specs(docs).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where} {container['name']} {kind}"


def test_images_are_pinned(overlay):
    name, docs = overlay
    for where, spec in pod_specs(docs).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            image = container["image"]
            repository, _, tag = image.rpartition(":")
            assert repository and "/" not in tag and tag not in ("", "latest"), f"{where}: {image} is not pinned"
            if name == "production" and where.startswith("Deployment/"):
                assert tag[0].isdigit(), f"production runs a release tag, not {image}"


def test_services_run_locked_down(overlay):
    _, docs = overlay
    data_dir = config(docs)["DUBAN_DATA_DIR"]
    for deployment in of_kind(docs, "Deployment").values():
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["terminationGracePeriodSeconds"] >= 30
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[data_dir]], "faust writes its data dir: it must be a writable emptyDir"


def test_settings_come_from_the_configmap_and_the_secret(overlay):
    name, docs = overlay
    known = known_env_names()
    data = config(docs)
    assert set(data) <= known, f"ConfigMap keys no settings class reads: {set(data) - known}"
    assert "DUBAN_HTTP_PORT" not in data, "each service listens on its own default port"
    assert data["DUBAN_KAFKA_ENABLE_IDEMPOTENCE"] == "true", "Apache Kafka has the idempotent producer"
    for where, spec in pod_specs(docs).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            for var in container.get("env", []):
                if var["name"].startswith("DUBAN_"):
                    assert var["name"] in known, f"{where}: {var['name']} is read by no settings class"
            if where.startswith("Deployment/"):
                refs = {var["name"]: var.get("valueFrom", {}).get("secretKeyRef") for var in container["env"]}
                assert refs["DUBAN_DATABASE_URL"]["key"] == "DUBAN_DATABASE_URL"
                assert [e["configMapRef"]["name"] for e in container["envFrom"]] == [
                    d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"]
    secrets = of_kind(docs, "Secret")
    if name == "production":
        assert not secrets, "production secrets are created out of band, never rendered from the repository"
    else:
        assert any("DUBAN_DATABASE_URL" in s["data"] for s in secrets.values())


def test_init_containers_create_topics_and_migrate_with_real_commands(overlay):
    _, docs = overlay
    parser = build_parser()
    for deployment in of_kind(docs, "Deployment").values():
        (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert init["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert init["command"][:2] == ["sh", "-c"]
        steps = [shlex.split(step) for step in init["command"][2].split("&&")]
        assert [s[:2] for s in steps] == [["duban", "topics"], ["duban", "migrate"]]
        for step in steps:
            parser.parse_args(step[1:])  # exits (fails the test) on a command the CLI does not have


def test_tracker_never_scales_beyond_the_partitions(overlay):
    _, docs = overlay
    partitions = int(config(docs)["DUBAN_TOPIC_PARTITIONS"])
    autoscalers = of_kind(docs, "HorizontalPodAutoscaler")
    assert set(autoscalers) == {"tracker", "intake"}
    assert autoscalers["tracker"]["spec"]["maxReplicas"] <= partitions
    deployments = {service_of(d): d for d in of_kind(docs, "Deployment").values()}
    for name, hpa in autoscalers.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployments[name]["metadata"]["name"])
        assert "replicas" not in deployments[name]["spec"], "the autoscaler owns the replica count"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_disruption_budgets_select_their_deployments(overlay):
    _, docs = overlay
    budgets = of_kind(docs, "PodDisruptionBudget")
    deployments = {service_of(d): d for d in of_kind(docs, "Deployment").values()}
    assert set(budgets) >= {"tracker", "intake"}
    for name, budget in budgets.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels, matchExpressions; {} selects all) selects these labels."""
    if not (selector.get("matchLabels", {}).items() <= labels.items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
        if expression["operator"] == "Exists" and value is None:
            return False
    return True


def test_network_policies_deny_by_default_and_open_each_service_port(overlay):
    _, docs = overlay
    policies = list(of_kind(docs, "NetworkPolicy").values())
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny, "a default-deny policy for the namespace"
    for deployment in of_kind(docs, "Deployment").values():
        name = service_of(deployment)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if _selects(p["spec"]["podSelector"], labels)]
        ingress_ports = {port["port"] for p in mine for rule in p["spec"].get("ingress", []) for port in rule.get("ports", [])}
        egress_ports = {port["port"] for p in mine for rule in p["spec"].get("egress", []) for port in rule.get("ports", [])}
        assert default_port(name) in ingress_ports, f"{name}: nothing lets Prometheus reach /metrics"
        assert {53, 9092, 5432} <= egress_ports, f"{name}: DNS, Kafka and PostgreSQL must be reachable"


def test_manifests_validate_against_the_kubernetes_schemas(overlay):
    import kubernetes_validate  # a dev dependency: it ships the Kubernetes schemas, so no network is needed

    _, docs = overlay
    version = "1.32.0"  # the cluster version the manifests are written for
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError with the path
