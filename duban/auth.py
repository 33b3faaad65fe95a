"""Who is asking: bearer tokens (JWT) for people and read clients, checked the same way by every service.

A token is verified against keys the operator configures (docs/decisions/012-bearer-tokens-and-roles.md):
the identity provider's JWKS (`DUBAN_AUTH_JWKS_URL`) in production, or one public key file
(`DUBAN_AUTH_PUBLIC_KEY_FILE`), which `duban run` points at the key pair it makes under the data
directory and `duban tokens issue` signs with. A service with neither refuses to start: it never runs open.

The token names a role (`DUBAN_AUTH_ROLE_CLAIM`, default `role`):
- `department` with the department's code (`DUBAN_AUTH_DEPARTMENT_CLAIM`, default `department`):
  reads and answers only its own items;
- `district-office`: reads and decides everything;
- `viewer`: reads everything, changes nothing.

Routers take `dependencies=[Depends(authenticated)]`, so a route added later is never open by
accident; a handler that needs the caller asks for `CurrentPrincipal` (FastAPI resolves it once).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Literal, get_args

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from duban.catalog import Catalog, load_catalog
from duban.problems import Problem
from duban.settings import ServiceSettings

Role = Literal["department", "district-office", "viewer"]
ROLES: tuple[str, ...] = get_args(Role)
# Algorithms a JWKS key may use; never "none" and never a shared secret (HS*), which any service could forge with.
ASYMMETRIC = ["EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
LOCAL_KEY_DIR = "auth"
PRIVATE_KEY_FILE, PUBLIC_KEY_FILE = "token-signing.key", "token-signing.pub"
REALM = "duban"


class AuthNotConfigured(RuntimeError):
    """No key to verify tokens with: the service must not start."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: the token's subject and what it may do."""

    subject: str
    role: Role
    department: str | None = None

    @property
    def sees_everything(self) -> bool:
        return self.role != "department"

    def may_see_department(self, code: str) -> bool:
        return self.sees_everything or code == self.department

    def may_see_task(self, catalog: Catalog, task_id: str) -> bool:
        """A task belongs to the departments that may report on it (lead, responsible unit, member
        of a named collective, or any unit where the task names an open collective), as intake rules."""
        return self.sees_everything or catalog.may_report_task(self.department, task_id)

    def visible_tasks(self, catalog: Catalog) -> list[str] | None:
        """The task ids this caller may see, or None for all of them."""
        if self.sees_everything:
            return None
        return [t.id for t in catalog.tasks if catalog.may_report_task(self.department, t.id)]

    def require_department(self, code: str, what: str) -> None:
        if not self.may_see_department(code):
            raise forbidden(f"{self.department} may see only its own {what}; this one is {code}'s")

    def require_task(self, catalog: Catalog, task_id: str, what: str = "task") -> None:
        if not self.may_see_task(catalog, task_id):
            raise forbidden(f"{self.department} may see only its own {what}s; {task_id} is not one of its tasks")


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", detail)


def unauthenticated(detail: str, error: str | None = "invalid_token") -> Problem:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return Problem(401, "unauthenticated", detail, headers={"WWW-Authenticate": challenge})


class TokenVerifier:
    """Checks a token's signature, expiry, issuer and audience, and reads its role."""

    def __init__(self, settings: ServiceSettings, catalog: Catalog | None = None) -> None:
        self.issuer, self.audience = settings.auth_issuer, settings.auth_audience
        self.role_claim, self.department_claim = settings.auth_role_claim, settings.auth_department_claim
        self.catalog = catalog or load_catalog()
        self._jwks: jwt.PyJWKClient | None = None
        self._key = None
        if settings.auth_jwks_url:
            self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True, timeout=5)
        elif settings.auth_public_key_file:
            path = Path(settings.auth_public_key_file)
            try:
                self._key = serialization.load_pem_public_key(path.read_bytes())
            except (OSError, ValueError) as error:
                raise AuthNotConfigured(f"cannot read the token public key {path}: {error}") from error
            self._algorithms = [_algorithm_of(self._key)]
        else:
            raise AuthNotConfigured(
                "no key to verify bearer tokens with: set DUBAN_AUTH_JWKS_URL (the identity provider) or"
                " DUBAN_AUTH_PUBLIC_KEY_FILE (`duban run` sets it to the key pair under DUBAN_DATA_DIR)")

    async def verify(self, token: str) -> Principal:
        if self._jwks is not None:
            # PyJWKClient fetches (and caches) the key set with blocking I/O: keep it off the event loop.
            return await asyncio.to_thread(self._verify_with_jwks, token)
        return self._principal(self._decode(token, self._key, self._algorithms))

    def _verify_with_jwks(self, token: str) -> Principal:
        try:
            signing_key = self._jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as error:
            raise Problem(503, "identity-provider-unavailable", f"the token keys could not be fetched: {error}",
                          headers={"Retry-After": "5"}) from error
        except (jwt.PyJWKClientError, jwt.DecodeError) as error:
            raise unauthenticated(f"the token's key is unknown: {error}") from error
        return self._principal(self._decode(token, signing_key.key, ASYMMETRIC))

    def _decode(self, token: str, key, algorithms: list[str]) -> dict:
        try:
            return jwt.decode(token, key, algorithms=algorithms, audience=self.audience, issuer=self.issuer,
                              options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise unauthenticated("the token has expired; get a new one") from None
        except jwt.InvalidTokenError as error:
            raise unauthenticated(f"the token is not valid here: {error}") from None

    def _principal(self, claims: dict) -> Principal:
        role, department = claims.get(self.role_claim), claims.get(self.department_claim)
        if role not in ROLES:
            raise unauthenticated(f"the token's {self.role_claim!r} claim must be one of {', '.join(ROLES)}")
        if role != "department":
            return Principal(str(claims["sub"]), role)
        if not isinstance(department, str) or not self._is_unit(department):
            raise unauthenticated(f"a department token names a department of the plan in {self.department_claim!r}")
        return Principal(str(claims["sub"]), role, department)

    def _is_unit(self, code: str) -> bool:
        try:
            return self.catalog.department(code).kind == "unit"
        except KeyError:
            return False


def _algorithm_of(key) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384"}.get(key.curve.name) or _unsupported(key)
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    return _unsupported(key)


def _unsupported(key) -> str:
    raise AuthNotConfigured(f"unsupported token key type {type(key).__name__}: use Ed25519, P-256, P-384 or RSA")


# -- FastAPI ----------------------------------------------------------------------------------------

bearer = HTTPBearer(auto_error=False, scheme_name="bearerJWT", bearerFormat="JWT",
                    description="A JWT from the district's identity provider or `duban tokens issue`"
                                " (role: department, district-office or viewer).")


def install(app, settings: ServiceSettings) -> None:
    """Gives the app its verifier; raises AuthNotConfigured when there is no key (the service must not start)."""
    app.state.verifier = TokenVerifier(settings)


async def authenticated(request: Request,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    if credentials is None:
        raise unauthenticated("send a bearer token: `Authorization: Bearer <JWT>` (`duban tokens issue`)", error=None)
    return await request.app.state.verifier.verify(credentials.credentials)


async def may_change(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    if principal.role == "viewer":
        raise forbidden("a viewer reads and changes nothing")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticated)]
ChangingPrincipal = Annotated[Principal, Depends(may_change)]
# Problems every authenticated route may answer, for the OpenAPI documents.
AUTH_PROBLEMS = {401: "unauthenticated", 403: "forbidden"}


# -- the embedded default key pair and `duban tokens issue` -------------------------------------------


def local_key_paths(data_dir: str | Path) -> tuple[Path, Path]:
    folder = Path(data_dir) / LOCAL_KEY_DIR
    return folder / PRIVATE_KEY_FILE, folder / PUBLIC_KEY_FILE


def ensure_local_keys(data_dir: str | Path) -> tuple[Path, Path]:
    """The Ed25519 key pair under the data dir, made on first use (the private key readable by its owner only)."""
    private_path, public_path = local_key_paths(data_dir)
    if private_path.exists() and public_path.exists():
        return private_path, public_path
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def issue_token(private_key_path: Path, settings: ServiceSettings, *, role: Role, department: str | None = None,
                subject: str | None = None, ttl: timedelta = timedelta(hours=8),
                now: datetime | None = None) -> str:
    # Real time, also on a virtual clock: the services check exp and nbf against the real one (PyJWT).
    now = now or datetime.now(timezone.utc)
    claims = {"iss": settings.auth_issuer, "aud": settings.auth_audience, "sub": subject or department or role,
              "iat": now, "nbf": now, "exp": now + ttl, "jti": str(uuid.uuid4()), settings.auth_role_claim: role}
    if department is not None:
        claims[settings.auth_department_claim] = department
    key = serialization.load_pem_private_key(private_key_path.read_bytes(), password=None)
    return jwt.encode(claims, key, algorithm=_algorithm_of(key.public_key()))
