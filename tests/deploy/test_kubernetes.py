"""The Kubernetes manifests (deploy/k8s), as `kubectl kustomize` renders each overlay."""

from __future__ import annotations

import pytest

from duban.cli import build_parser
from tests.deploy.conftest import (K8S, KAFKA_CLIENTS, SERVICES, default_port, known_env_names, kustomize, of_kind, pod_specs,
                                   service_of)
from tests.deploy.test_crds import is_built_in


def config(docs: list[dict]) -> dict[str, str]:
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("duban-config")]
    return configmap["data"]


def config_name(docs: list[dict]) -> str:
    return next(d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("duban-config"))


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


def test_settings_come_from_the_configmap_and_the_secrets(overlay):
    name, docs = overlay
    known = known_env_names()
    data = config(docs)
    assert set(data) <= known, f"ConfigMap keys no settings class reads: {set(data) - known}"
    assert "DUBAN_HTTP_PORT" not in data, "each service listens on its own default port"
    assert data["DUBAN_KAFKA_ENABLE_IDEMPOTENCE"] == "true", "Apache Kafka has the idempotent producer"
    for where, spec in pod_specs(docs).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            env = {var["name"]: var for var in container.get("env", [])}
            for var in env:
                if var.startswith("DUBAN_"):
                    assert var in known, f"{where}: {var} is read by no settings class"
            if where.startswith(("Deployment/", "Job/")):  # Duban's own pods
                assert [e["configMapRef"]["name"] for e in container["envFrom"]] == [config_name(docs)]
            if where.startswith("Deployment/") or where == "Job/duban-migrate":
                assert_database_credentials(name, where, container, env, data)
    secrets = of_kind(docs, "Secret")
    if name == "production":
        assert not secrets, "production secrets are created out of band, never rendered from the repository"
    else:
        assert any("DUBAN_DATABASE_URL" in s["data"] for s in secrets.values())


def assert_database_credentials(overlay: str, where: str, container: dict, env: dict, data: dict) -> None:
    """Locally the URL (with its password) comes from a Secret; in production the URL has no credentials and
    each service logs in as its own role (PGUSER / PGPASSWORD from the Secret of that role)."""
    if overlay == "local":
        assert env["DUBAN_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DUBAN_DATABASE_URL", where
        return
    assert "DUBAN_DATABASE_URL" not in env, f"{where}: the URL is the ConfigMap's, without credentials"
    assert "@" not in data["DUBAN_DATABASE_URL"] and "sslmode=verify-full" in data["DUBAN_DATABASE_URL"]
    command = container["command"]
    service = command[command.index("--service") + 1] if "--service" in command else command[2].removeprefix("services.")
    for var, key in (("PGUSER", "username"), ("PGPASSWORD", "password")):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": f"duban-pg-{service}", "key": key}, f"{where} {var}"


def test_no_deployment_migrates_each_waits_for_the_migration_job(overlay):
    name, docs = overlay
    parser = build_parser()
    for deployment in of_kind(docs, "Deployment").values():
        service = service_of(deployment)
        spec = deployment["spec"]["template"]["spec"]
        (init,) = spec["initContainers"]
        assert init["image"] == spec["containers"][0]["image"]
        assert init["command"][:5] == ["duban", "migrate", "--service", service, "--wait"], init["command"]
        args = parser.parse_args(init["command"][1:])  # exits (fails the test) on a command the CLI does not have
        assert args.wait and args.wait > 0
    job = of_kind(docs, "Job")["duban-migrate"]
    migrated = set()
    for container in job["spec"]["template"]["spec"]["containers"]:
        command = container["command"]
        assert command[:2] == ["duban", "migrate"] and "--wait" not in command, command
        migrated |= set(parser.parse_args(command[1:]).service or SERVICES)
    assert migrated == set(SERVICES), "the Job migrates every service's schema"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    topics = of_kind(docs, "Job").get("duban-topics")
    if name == "local":  # production declares the topics as KafkaTopics
        parser.parse_args(topics["spec"]["template"]["spec"]["containers"][0]["command"][1:])
    else:
        assert topics is None


def test_stream_processors_never_scale_beyond_the_partitions(overlay):
    name, docs = overlay
    partitions = int(config(docs)["DUBAN_TOPIC_PARTITIONS"])
    autoscalers = of_kind(docs, "HorizontalPodAutoscaler")
    scaled = of_kind(docs, "ScaledObject")
    deployments = {service_of(d): d for d in of_kind(docs, "Deployment").values()}
    if name == "production":
        # KEDA on consumer lag for the consumers, CPU for intake (components/keda).
        assert set(autoscalers) == {"intake"} and set(scaled) == {"tracker", "metrics", "notifier"}
        topics = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(docs, "KafkaTopic").values()}
        for service, scaler in scaled.items():
            assert scaler["spec"]["scaleTargetRef"]["name"] == deployments[service]["metadata"]["name"]
            assert all(t["type"] == "kafka" for t in scaler["spec"]["triggers"])
            consumed = [t["metadata"]["topic"] for t in scaler["spec"]["triggers"]]
            assert scaler["spec"]["maxReplicaCount"] <= min(topics[t] for t in consumed), service
            assert 1 <= scaler["spec"]["minReplicaCount"] <= scaler["spec"]["maxReplicaCount"]
            assert "replicas" not in deployments[service]["spec"], "KEDA owns the replica count"
    else:
        assert set(autoscalers) == {"tracker", "intake"} and not scaled
        assert autoscalers["tracker"]["spec"]["maxReplicas"] <= partitions
    for service, hpa in autoscalers.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployments[service]["metadata"]["name"])
        assert "replicas" not in deployments[service]["spec"], "the autoscaler owns the replica count"
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
        kafka_port = int(config(docs)["DUBAN_KAFKA_BOOTSTRAP"].rpartition(":")[2])
        assert default_port(name) in ingress_ports, f"{name}: nothing lets Prometheus reach /metrics"
        if name in KAFKA_CLIENTS:
            assert {53, kafka_port, 5432} <= egress_ports, f"{name}: DNS, Kafka and PostgreSQL must be reachable"
        else:  # the board: its database and the read APIs it renders
            assert {53, 5432, *(default_port(s) for s in ("tracker", "metrics", "notifier"))} <= egress_ports, name
        if name == "notifier":
            env = {v["name"]: v.get("value") for v in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert int(env["DUBAN_SMTP_PORT"]) in egress_ports, "the notifier reaches its SMTP relay's port"


def test_manifests_validate_against_the_kubernetes_schemas(overlay):
    import kubernetes_validate  # a dev dependency: it ships the Kubernetes schemas, so no network is needed

    _, docs = overlay
    version = "1.32.0"  # the cluster version the manifests are written for
    for doc in docs:
        if is_built_in(doc):  # custom resources: tests/deploy/test_crds.py, against their operators' CRDs
            kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError with the path
