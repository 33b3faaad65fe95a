"""Every service of every shape has a key to check bearer tokens with (it refuses to start without
one): the identity provider's JWKS URL, or a public key file on a volume the service mounts."""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlsplit

from tests.deploy.conftest import SERVICES, of_kind, service_of

KEY_SETTINGS = ("DUBAN_AUTH_JWKS_URL", "DUBAN_AUTH_PUBLIC_KEY_FILE")


def _mounted(path: str, mount_points: set[str]) -> bool:
    return any(PurePosixPath(path).is_relative_to(point) for point in mount_points)


def _check(where: str, env: dict[str, str], mount_points: set[str]) -> None:
    assert any(env.get(name) for name in KEY_SETTINGS), f"{where} sets neither of {KEY_SETTINGS}"
    if env.get("DUBAN_AUTH_PUBLIC_KEY_FILE") and not env.get("DUBAN_AUTH_JWKS_URL"):
        path = env["DUBAN_AUTH_PUBLIC_KEY_FILE"]
        assert _mounted(path, mount_points), f"{where}: {path} is on no volume the service mounts ({mount_points})"


def _env(container: dict, configmaps: dict[str, dict]) -> dict[str, str]:
    """A container's settings: its ConfigMaps, then its own plain values (secret references aside)."""
    env = {}
    for source in container.get("envFrom", ()):
        env |= configmaps[source["configMapRef"]["name"]]["data"]
    return env | {e["name"]: e["value"] for e in container.get("env", ()) if "value" in e}


def test_every_compose_service_has_a_token_key(compose):
    services = compose["services"]
    for name in SERVICES:
        service = services[name]
        mounts = {volume.split(":")[1] for volume in service.get("volumes", ())}
        _check(f"compose {name}", service["environment"], mounts)
        # The file is init's export: a service reads it from the volume init writes it to.
        volume_of = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        init_volumes = {v.split(":")[0]: v.split(":")[1] for v in services["init"]["volumes"]}
        key_dir = str(PurePosixPath(service["environment"]["DUBAN_AUTH_PUBLIC_KEY_FILE"]).parent)
        assert init_volumes[volume_of[key_dir]] == key_dir, f"{name} mounts a key volume init does not fill"
        assert f"> {service['environment']['DUBAN_AUTH_PUBLIC_KEY_FILE']}" in services["init"]["command"][2]
        assert f"{volume_of[key_dir]}:{key_dir}:ro" in service["volumes"], f"{name} may write the key"


def test_every_deployment_of_every_overlay_has_a_token_key(overlay):
    name, docs = overlay
    configmaps = of_kind(docs, "ConfigMap")
    deployments = [d for d in of_kind(docs, "Deployment").values()]
    assert {service_of(d) for d in deployments} >= set(SERVICES)
    for deployment in deployments:
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        env = _env(container, configmaps)
        volumes = {v["name"] for v in spec.get("volumes", ())}
        mounts = {m["mountPath"] for m in container.get("volumeMounts", ()) if m["name"] in volumes}
        _check(f"{name} {deployment['metadata']['name']}", env, mounts)


def _selects(policy: dict, labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", ())
               if e["operator"] == "In")


def test_a_service_given_a_jwks_url_may_reach_it(overlay):
    name, docs = overlay
    configmaps = of_kind(docs, "ConfigMap")
    policies = [p for p in of_kind(docs, "NetworkPolicy").values() if "Egress" in p["spec"]["policyTypes"]]
    for deployment in of_kind(docs, "Deployment").values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = _env(container, configmaps)
        url = urlsplit(env.get("DUBAN_AUTH_JWKS_URL") or "")
        if not url.hostname:
            continue
        port = url.port or {"https": 443, "http": 80}[url.scheme]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        allowed = {rule_port["port"] for policy in policies if _selects(policy, labels)
                   for rule in policy["spec"].get("egress", ()) for rule_port in rule.get("ports", ())}
        assert port in allowed, f"{name} {deployment['metadata']['name']}: no egress to {url.geturl()}"


def test_the_board_alone_gets_its_service_token_and_no_signing_key(compose, overlay):
    """The board's own token (it issues the weekly bulletin and hands it to the notifier): compose's init writes
    it into a volume only the board mounts, read-only; on Kubernetes the board mounts the Secret it is in."""
    services = compose["services"]
    board = services["board"]
    token_file = board["environment"]["DUBAN_SERVICE_TOKEN_FILE"]
    token_dir = str(PurePosixPath(token_file).parent)
    [volume] = [v.split(":")[0] for v in board["volumes"] if v.split(":")[1] == token_dir]
    assert f"{volume}:{token_dir}:ro" in board["volumes"]
    assert f"{volume}:{token_dir}" in services["init"]["volumes"] and f"> {token_file}" in services["init"]["command"][2]
    others = [name for name, service in services.items() if name not in ("board", "init")
              and any(v.split(":")[0] in (volume, "token-keys") for v in service.get("volumes", ()))]
    assert others == []
    _, docs = overlay
    [deployment] = [d for d in of_kind(docs, "Deployment").values() if service_of(d) == "board"]
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    [mount] = [m for m in container["volumeMounts"] if m["name"] in secrets
               and PurePosixPath(env["DUBAN_SERVICE_TOKEN_FILE"]).parent == PurePosixPath(m["mountPath"])]
    assert secrets[mount["name"]] == "duban-board-token" and mount["readOnly"]
