"""Custom resources (Strimzi, CloudNativePG, Prometheus Operator, KEDA, cert-manager) against the CRDs of
the pinned operator releases vendored in deploy/k8s/crds, and the PrometheusRule against the rule files
it is generated from. kubernetes-validate (test_kubernetes.py) covers the built-in kinds."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
from functools import cache

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import K8S, ROOT, kustomize, load_all, of_kind

CRDS = K8S / "crds"
BUILT_IN_GROUPS = {"", "apps", "batch", "networking.k8s.io", "autoscaling", "policy"}


def sources() -> list[dict]:
    return [f for release in yaml.safe_load((CRDS / "SOURCES.yaml").read_text())["releases"] for f in release["files"]]


@pytest.mark.parametrize("source", sources(), ids=lambda s: s["file"])
def test_vendored_crds_are_the_recorded_release_files(source):
    data = (CRDS / source["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == source["sha256"], f"{source['file']} differs from {source['source']}"


def test_each_file_comes_from_its_release_tag():
    for release in yaml.safe_load((CRDS / "SOURCES.yaml").read_text())["releases"]:
        assert len(release["commit"]) == 40
        for source in release["files"]:
            assert source["source"].startswith(f"{release['repository'].replace('github.com', 'raw.githubusercontent.com')}/"
                                                f"{release['ref']}/"), source
            for crd in load_all((CRDS / source["file"]).read_text(encoding="utf-8")):
                # Prometheus Operator stamps its CRDs with its version; the others do not.
                stamped = crd["metadata"].get("annotations", {}).get("operator.prometheus.io/version")
                assert stamped in (None, release["ref"].removeprefix("v")), f"{source['file']} is from {stamped}"


def test_every_vendored_crd_is_recorded():
    recorded = {s["file"] for s in sources()}
    assert {str(p.relative_to(CRDS)) for p in CRDS.rglob("*.yaml") if p.name != "SOURCES.yaml"} == recorded


def _structural(schema: dict) -> dict:
    """An OpenAPI v3 schema of a CRD as JSON Schema (draft 4, which OpenAPI 3.0 follows), with the
    Kubernetes extensions applied as the API server applies them:
    - x-kubernetes-int-or-string: an integer or a string;
    - nullable: null is allowed too;
    - an object with `properties` admits no other field unless x-kubernetes-preserve-unknown-fields
      (the API server's strict field validation, `kubectl apply --validate=strict`);
    - x-kubernetes-embedded-resource: apiVersion, kind and metadata are allowed.
    CEL rules (x-kubernetes-validations) are the operator's admission's business and are not evaluated."""
    schema = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-validations")}
    for key in ("properties", "patternProperties", "definitions"):
        if key in schema:
            schema[key] = {name: _structural(sub) for name, sub in schema[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            schema[key] = _structural(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [_structural(sub) for sub in schema[key]]
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("type", None)
        schema.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.pop("x-kubernetes-embedded-resource", False):
        schema.setdefault("properties", {}).update(
            {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}})
    if (schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    if schema.pop("nullable", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


@cache
def crd_validators() -> dict[tuple[str, str], jsonschema.Draft4Validator]:
    """(apiVersion, kind) -> validator of that served version's openAPIV3Schema, for every vendored CRD."""
    validators = {}
    for source in sources():
        for crd in load_all((CRDS / source["file"]).read_text(encoding="utf-8")):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = _structural(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                    validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(schema)
    return validators


def validation_errors(doc: dict) -> list[str]:
    validator = crd_validators()[(doc["apiVersion"], doc["kind"])]
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def is_built_in(doc: dict) -> bool:
    return doc["apiVersion"].rpartition("/")[0] in BUILT_IN_GROUPS


def test_every_custom_resource_validates_against_its_pinned_crd(overlay):
    name, docs = overlay
    custom = [d for d in docs if not is_built_in(d)]
    for doc in custom:
        where = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        assert (doc["apiVersion"], doc["kind"]) in crd_validators(), f"{where}: no vendored CRD for {doc['apiVersion']}"
        assert not validation_errors(doc), f"{where}:\n" + "\n".join(validation_errors(doc))
    if name == "production":
        assert {d["kind"] for d in custom} >= {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster",
                                               "Database", "ScheduledBackup", "ServiceMonitor", "PrometheusRule",
                                               "AlertmanagerConfig", "ScaledObject", "TriggerAuthentication",
                                               "Certificate"}


@pytest.mark.parametrize("kind, path, value", [
    ("Kafka", ["spec", "kafka", "listeners", 0, "port"], "nine-thousand"),
    ("Kafka", ["spec", "kafka", "replicas"], 3),  # moved to KafkaNodePool in Strimzi's v1 API
    ("KafkaTopic", ["spec", "partitons"], 12),
    ("Cluster", ["spec", "instances"], "3"),
    ("ScaledObject", ["spec", "triggers", 0, "metadata", "lagThreshold"], 5),  # trigger metadata is strings
    ("Certificate", ["spec", "issuerRef", "name"], None),
])
def test_the_validation_catches_what_the_api_server_would_refuse(kind, path, value):
    docs = kustomize(K8S / "overlays" / "production")
    doc = copy.deepcopy(next(d for d in docs if d["kind"] == kind))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert validation_errors(doc), f"{kind} with {'.'.join(map(str, path))}={value!r} should be invalid"


def test_int_or_string_and_nullable_are_understood():
    kafka = next(d for d in kustomize(K8S / "overlays" / "production") if d["kind"] == "Kafka")
    config = kafka["spec"]["kafka"]["config"]
    assert not validation_errors(kafka)
    config["min.insync.replicas"] = "2"  # free-form config: a string is as good
    assert not validation_errors(kafka)


def _generator():
    spec = importlib.util.spec_from_file_location("prometheus_rule", K8S / "components" / "monitoring" / "prometheus_rule.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheus_rule_holds_exactly_the_rule_files():
    generator = _generator()
    committed = generator.OUTPUT.read_text(encoding="utf-8")
    assert committed == generator.render(), "prometheus-rule.yaml is stale: run `make prometheus-rule`"
    rule = of_kind(kustomize(K8S / "overlays" / "production"), "PrometheusRule")["duban"]
    files = [group for path in sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
             for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]
    assert rule["spec"]["groups"] == files
    alerts = [r for g in files for r in g["rules"] if "alert" in r]
    assert alerts and all(r["labels"]["severity"] in ("critical", "warning") for r in alerts), \
        "the AlertmanagerConfig routes on these two severities"
