"""The production overlay's custom resources fit together and fit the code: the topics are the ones
Duban uses, each service logs in to Kafka as its own user allowed exactly its topics and groups, to
PostgreSQL as the role owning its schema, Prometheus Operator scrapes every service under the job
name the rules use, KEDA reads the groups the services consume in, the Ingress serves intake."""

from __future__ import annotations

import pytest
import yaml

from duban.broker import all_topics
from duban.settings import ServiceSettings
from tests.deploy.conftest import K8S, KAFKA_CLIENTS, ROOT, SERVICES, kustomize, of_kind, service_of, settings_class

CONSUMERS = ("tracker", "metrics", "notifier")


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return kustomize(K8S / "overlays" / "production")


def env_of(deployment: dict) -> dict[str, dict]:
    return {v["name"]: v for v in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def deployments(docs) -> dict[str, dict]:
    return {service_of(d): d for d in of_kind(docs, "Deployment").values()}


def groups_of(service: str) -> set[str]:
    settings = settings_class(service)()
    return {getattr(settings, f) for f in ("consumer_group", "reports_consumer_group") if hasattr(settings, f)}


def allowed(user: dict, resource_type: str, name: str, operation: str) -> bool:
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        matches = (name.startswith(resource["name"]) if resource.get("patternType") == "prefix"
                   else name == resource["name"])
        if resource["type"] == resource_type and matches and operation in acl["operations"]:
            return True
    return False


def test_the_kafka_cluster_is_kraft_with_three_brokers_across_zones(docs):
    (kafka,) = of_kind(docs, "Kafka").values()
    (pool,) = of_kind(docs, "KafkaNodePool").values()
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    assert kafka["spec"]["kafka"]["rack"]["topologyKey"] == "topology.kubernetes.io/zone"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True and listener["authentication"]["type"] == "scram-sha-512"


def test_the_topics_are_those_duban_uses(docs):
    topics = {t["spec"]["topicName"]: t for t in of_kind(docs, "KafkaTopic").values()}
    assert set(topics) == set(all_topics(ServiceSettings()))
    for name, topic in topics.items():
        assert topic["spec"]["replicas"] == 3 and topic["spec"]["config"]["min.insync.replicas"] == 2, name
        assert topic["spec"]["config"]["retention.ms"] == -1, f"{name}: replays and re-drives need every record"
        assert topic["spec"]["config"]["cleanup.policy"] == "delete", f"{name}: a key carries many events"


def test_each_service_is_its_own_kafka_user_allowed_what_it_reads_and_writes(docs):
    users = of_kind(docs, "KafkaUser")
    settings = ServiceSettings()
    dlq = settings.dead_letter_suffix
    reads = {"tracker": [settings.topic_dept_events], "notifier": [settings.topic_tracker_changes],
             "metrics": [settings.topic_tracker_changes, settings.topic_dept_events], "intake": []}
    writes = {"intake": [settings.topic_dept_events],
              "tracker": [settings.topic_tracker_changes, settings.topic_dept_events + dlq],
              "notifier": [settings.topic_tracker_changes + dlq],
              "metrics": [settings.topic_tracker_changes + dlq, settings.topic_dept_events + dlq]}
    for service, deployment in deployments(docs).items():
        env = env_of(deployment)
        if service not in KAFKA_CLIENTS:
            assert not any(name.startswith("DUBAN_KAFKA_SASL") for name in env), f"{service} needs no Kafka account"
            continue
        name = env["DUBAN_KAFKA_SASL_USERNAME"]["value"]
        assert env["DUBAN_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": name, "key": "password"}
        user = users[name]
        for topic in reads[service]:
            assert allowed(user, "topic", topic, "Read"), f"{name} must read {topic}"
        for topic in writes[service]:
            assert allowed(user, "topic", topic, "Write"), f"{name} must write {topic}"
        for group in groups_of(service):
            assert allowed(user, "group", group, "Read"), f"{name} must consume in {group}"
        for topic in set(all_topics(settings)) - set(writes[service]):
            assert not allowed(user, "topic", topic, "Write"), f"{name} may write {topic}, which it never writes"
        for topic in set(all_topics(settings)) - set(reads[service]):
            assert not allowed(user, "topic", topic, "Read"), f"{name} may read {topic}, which it never reads"
    assert len({env_of(d)["DUBAN_KAFKA_SASL_USERNAME"]["value"] for s, d in deployments(docs).items()
                if s in KAFKA_CLIENTS}) == len(KAFKA_CLIENTS)


def test_keda_reads_the_lag_of_the_groups_the_services_consume_in(docs):
    users = of_kind(docs, "KafkaUser")
    (auth,) = of_kind(docs, "TriggerAuthentication").values()
    configmaps = {c["metadata"]["name"]: c["data"] for c in of_kind(docs, "ConfigMap").values()}
    params = {ref["parameter"]: configmaps[ref["name"]][ref["key"]] for ref in auth["spec"]["configMapTargetRef"]}
    assert params["sasl"] == "scram_sha512" and params["tls"] == "enable"
    keda_user = users[params["username"]]
    secrets = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert secrets["password"]["name"] == params["username"]
    kafka_port = int(next(iter(of_kind(docs, "Kafka").values()))["spec"]["kafka"]["listeners"][0]["port"])
    for service, scaler in of_kind(docs, "ScaledObject").items():
        triggers = scaler["spec"]["triggers"]
        assert {t["metadata"]["consumerGroup"] for t in triggers} == groups_of(service), service
        for trigger in triggers:
            assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
            assert trigger["metadata"]["bootstrapServers"].endswith(f".svc:{kafka_port}")
            assert allowed(keda_user, "group", trigger["metadata"]["consumerGroup"], "Describe")
            assert allowed(keda_user, "topic", trigger["metadata"]["topic"], "Describe")
            assert not allowed(keda_user, "topic", trigger["metadata"]["topic"], "Read")
    assert set(of_kind(docs, "ScaledObject")) == set(CONSUMERS)


def test_each_service_is_the_postgresql_role_owning_its_schema(docs):
    (cluster,) = of_kind(docs, "Cluster").values()
    (database,) = of_kind(docs, "Database").values()
    roles = {r["passwordSecret"]["name"]: r["name"] for r in cluster["spec"]["managed"]["roles"]}
    owners = {s["name"]: s["owner"] for s in database["spec"]["schemas"]}
    assert cluster["spec"]["instances"] == 3 and database["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    for service, deployment in deployments(docs).items():
        secret = env_of(deployment)["PGUSER"]["valueFrom"]["secretKeyRef"]["name"]
        schema = settings_class(service)().model_dump().get("schema_name", service)
        assert owners[schema] == roles[secret], f"{service} logs in as the owner of schema {schema}"
    (backup,) = of_kind(docs, "ScheduledBackup").values()
    assert backup["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert cluster["spec"]["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")


def test_prometheus_operator_scrapes_every_service_as_prometheus_yml_does(docs):
    jobs = {c["static_configs"][0]["targets"][0].split(":")[0]: c["job_name"] for c in
            yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text(encoding="utf-8"))["scrape_configs"]
            if c["job_name"].startswith("duban-")}
    services = of_kind(docs, "Service")
    monitors = of_kind(docs, "ServiceMonitor")
    assert set(monitors) == set(SERVICES)
    for name, monitor in monitors.items():
        service = services[name]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
        job = [r for r in endpoint["relabelings"] if r.get("targetLabel") == "job"]
        assert [r["replacement"] for r in job] == [jobs[name]], "rules and dashboards select on this job name"


def test_alerts_of_every_severity_reach_a_receiver(docs):
    (config,) = of_kind(docs, "AlertmanagerConfig").values()
    receivers = {r["name"] for r in config["spec"]["receivers"]}
    route = config["spec"]["route"]
    severities = {m["value"] for r in route["routes"] for m in r["matchers"] if m["name"] == "severity"}
    assert severities == {"critical", "warning"}
    assert {route["receiver"]} | {r["receiver"] for r in route["routes"]} <= receivers


def test_intake_and_the_board_are_served_over_tls_from_cert_manager_certificates(docs):
    ingresses, certificates = of_kind(docs, "Ingress"), of_kind(docs, "Certificate")
    assert set(ingresses) == {"intake", "board"}
    by_secret = {c["spec"]["secretName"]: c for c in certificates.values()}
    for name, ingress in ingresses.items():
        (tls,) = ingress["spec"]["tls"]
        certificate = by_secret[tls["secretName"]]
        assert set(tls["hosts"]) == set(certificate["spec"]["dnsNames"]) == {r["host"] for r in ingress["spec"]["rules"]}
        backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
        service = of_kind(docs, "Service")[name]
        assert backends and all(b["name"] == name for b in backends)
        assert all(b["port"]["name"] in {p["name"] for p in service["spec"]["ports"]} for b in backends)
    # Only intake's CloudEvents endpoint is published of intake; the board's cookie goes over HTTPS only.
    assert [p["path"] for r in ingresses["intake"]["spec"]["rules"] for p in r["http"]["paths"]] == ["/v1/events"]
    assert env_of(deployments(docs)["board"])["DUBAN_COOKIE_SECURE"]["value"] == "true"

def test_the_notifier_reads_its_routes_and_smtp_account_from_secrets(docs):
    notifier = deployments(docs)["notifier"]
    env = env_of(notifier)
    spec = notifier["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    routes = env["DUBAN_NOTIFIER_ROUTES"]["value"]
    directory, _, file = routes.rpartition("/")
    assert [i["path"] for i in volumes[mounts[directory]]["secret"]["items"]] == [file]
    assert env["DUBAN_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "duban-smtp"
    assert env["DUBAN_SMTP_HOST"]["value"] in of_kind(docs, "Service"), "the relay has a name in the namespace"


def test_the_ca_files_the_settings_name_are_mounted_from_the_operators_secrets(docs):
    (config,) = [c["data"] for c in of_kind(docs, "ConfigMap").values() if "DUBAN_DATABASE_URL" in c["data"]]
    kafka_ca = config["DUBAN_KAFKA_SSL_CAFILE"]
    postgresql_ca = config["DUBAN_DATABASE_URL"].partition("sslrootcert=")[2]
    for service, deployment in deployments(docs).items():
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v.get("secret", {}) for v in spec["volumes"]}

        def mounted(container: dict, path: str) -> str:
            """The Secret holding the file at `path` in the container."""
            directory, _, file = path.rpartition("/")
            (name,) = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == directory]
            assert [i["path"] for i in volumes[name]["items"]] == [file], f"{service}: {path}"
            return volumes[name]["secretName"]

        if service in KAFKA_CLIENTS:
            assert mounted(spec["containers"][0], kafka_ca) == "duban-kafka-cluster-ca-cert"
        for container in (spec["initContainers"][0], spec["containers"][0]):
            assert mounted(container, postgresql_ca) == "duban-pg-ca", f"{service} {container['name']}"
