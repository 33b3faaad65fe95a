"""Which tokens open a door: only one signed by a configured key, for this audience and issuer, not
expired, naming a known role; `duban tokens issue` makes one the embedded default accepts; a service
with no key to check tokens with does not start."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from duban.auth import TokenVerifier, ensure_local_keys, issue_token
from duban.settings import ServiceSettings
from entrypoints.services import SERVICES
from tests.auth.conftest import service_api
from tests.conftest import ROOT, free_port
from tests.intake.conftest import STRUCTURED, progress


def _part(value: dict | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(claims: dict) -> str:
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(claims)}."


def hmac_signed(claims: dict, secret: bytes) -> str:
    """HS256 with the public key as the shared secret: the classic algorithm confusion."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT'})}.{_part(claims)}"
    return f"{signing_input}.{_part(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def bad_tokens(tokens, other_key) -> dict[str, str]:
    settings = ServiceSettings()
    claims = {"iss": settings.auth_issuer, "aud": settings.auth_audience, "sub": "x", "exp": 4102444800,
              "role": "district-office"}
    return {
        "expired": tokens.issue(ttl=timedelta(seconds=-30)),
        "forged": issue_token(other_key, settings, role="district-office"),
        "wrong-audience": tokens.issue(auth_audience="another-system"),
        "wrong-issuer": tokens.issue(auth_issuer="https://somebody-else.example"),
        "no-role": tokens.issue(auth_role_claim="roles"),
        "unknown-department": issue_token(tokens.private_key, settings, role="department", department="atlantis"),
        "unsigned": unsigned(claims),
        "hmac-with-public-key": hmac_signed(claims, tokens.public_key.read_bytes()),
        "garbage": "not.a.token",
    }


@pytest.mark.database
async def test_tokens_that_do_not_hold_are_refused_with_401(database_url, kafka_bootstrap, tokens, tmp_path):
    other_key, _ = ensure_local_keys(tmp_path / "elsewhere")
    async with service_api("tracker", database_url, kafka_bootstrap, tokens) as tracker, \
            service_api("intake", database_url, kafka_bootstrap, tokens) as intake, httpx.AsyncClient() as client:
        for why, token in bad_tokens(tokens, other_key).items():
            headers = {"authorization": f"Bearer {token}"}
            for response in (await client.get(tracker.url + "/v1/tasks/T07", headers=headers),
                             await client.post(intake.url + "/v1/events", content=json.dumps(progress("T07", "market-regulation")),
                                               headers={**STRUCTURED, **headers})):
                assert response.status_code == 401, (why, response.request.url, response.text)
                assert response.json()["type"].endswith("/unauthenticated")
                assert 'error="invalid_token"' in response.headers["www-authenticate"]
        good = await client.get(tracker.url + "/v1/tasks/T07", headers=tokens.headers(role="viewer"))
        assert good.status_code == 200 and good.json()["id"] == "T07"
        # At intake a department's token posts as that department; other roles do not report.
        posted = await client.post(intake.url + "/v1/events", content=json.dumps(progress("T07", "market-regulation")),
                                   headers={**STRUCTURED, **tokens.headers(department="market-regulation")})
        assert posted.status_code == 202, posted.text
        office = await client.post(intake.url + "/v1/events", content=json.dumps(progress("T07", "market-regulation")),
                                   headers={**STRUCTURED, **tokens.headers(role="district-office")})
        assert office.status_code == 403 and "only a department posts events" in office.json()["detail"]


def serve_jwks(jwks: dict) -> tuple[ThreadingHTTPServer, str]:
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}/.well-known/jwks.json"


async def test_an_identity_providers_jwks_verifies_its_tokens(tmp_path):
    private_path, public_path = ensure_local_keys(tmp_path)
    public = serialization.load_pem_public_key(public_path.read_bytes())
    jwk = {**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public)), "kid": "idp-2026", "alg": "EdDSA", "use": "sig"}
    server, url = serve_jwks({"keys": [jwk]})
    try:
        settings = ServiceSettings(auth_jwks_url=url, auth_issuer="https://idp.gulou.gov.cn", auth_audience="duban")
        verifier = TokenVerifier(settings)
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        claims = {"iss": "https://idp.gulou.gov.cn", "aud": "duban", "sub": "zhang.san", "exp": 4102444800,
                  "role": "department", "department": "tax-bureau"}
        principal = await verifier.verify(jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "idp-2026"}))
        assert (principal.subject, principal.role, principal.department) == ("zhang.san", "department", "tax-bureau")
        with pytest.raises(Exception, match="unknown|not valid") as refused:
            await verifier.verify(jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "retired-key"}))
        assert refused.value.status == 401
    finally:
        server.shutdown()


def duban(*args: str, data_dir) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")} | {"DUBAN_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "entrypoints.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


async def test_duban_tokens_issue_signs_what_the_embedded_default_trusts(tmp_path):
    issued = duban("tokens", "issue", "--department", "tax-bureau", "--hours", "2", "--subject", "税务局 赵六",
                   data_dir=tmp_path)
    assert issued.returncode == 0, issued.stderr
    _, public = ensure_local_keys(tmp_path)  # the pair the command made on first use
    verifier = TokenVerifier(ServiceSettings(auth_public_key_file=str(public)))
    principal = await verifier.verify(issued.stdout.strip())
    assert (principal.subject, principal.role, principal.department) == ("税务局 赵六", "department", "tax-bureau")
    claims = jwt.decode(issued.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 7200
    assert (await verifier.verify(duban("tokens", "issue", "--role", "viewer", data_dir=tmp_path).stdout.strip())).role == "viewer"
    collective = duban("tokens", "issue", "--department", "subdistricts-town", data_dir=tmp_path)
    assert collective.returncode == 1 and "collective" in collective.stderr
    assert duban("tokens", "issue", "--role", "department", data_dir=tmp_path).returncode == 2


async def test_duban_tokens_keys_prints_the_public_key_that_verifies_issued_tokens(tmp_path):
    printed = duban("tokens", "keys", data_dir=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert duban("tokens", "keys", data_dir=tmp_path).stdout == printed.stdout, "the pair is made once, then kept"
    public = tmp_path / "exported.pub"
    public.write_text(printed.stdout, encoding="ascii")
    verifier = TokenVerifier(ServiceSettings(auth_public_key_file=str(public)))
    token = duban("tokens", "issue", "--role", "district-office", data_dir=tmp_path).stdout.strip()
    assert (await verifier.verify(token)).role == "district-office"


@pytest.mark.parametrize("service", [spec.name for spec in SERVICES])
def test_a_service_without_a_key_to_check_tokens_does_not_start(service, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUBAN_")} | {
        "DUBAN_HTTP_PORT": str(free_port()), "DUBAN_DATA_DIR": str(tmp_path),
        "DUBAN_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "DUBAN_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    started = subprocess.run([sys.executable, "-m", f"services.{service}"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
    assert started.returncode != 0
    assert "no key to verify bearer tokens" in started.stdout + started.stderr
