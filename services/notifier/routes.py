"""Recipient routing: which channel addresses receive a department's notices (DUBAN_NOTIFIER_ROUTES).

The file is YAML (JSON is YAML too); its format is documented in docs/notifier.md. Every address
becomes a `Target` named by a `recipient` label, which is what deliveries record and the API shows:
robot and webhook URLs carry secrets, so their labels are a name or a digest, never the URL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from duban.catalog import Catalog

Url = Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
Address = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$")]
Levels = Annotated[frozenset[Literal[1, 2, 3]], Field(min_length=1)]
ALL_LEVELS = frozenset({1, 2, 3})


class _Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Levels whose notices this address receives, e.g. [2] for a head's mailbox that wants 催办 only.
    levels: Levels = ALL_LEVELS
    # immediate: each notice as it is due; digest: one message a working day, at DUBAN_DIGEST_AT, listing
    # the department's open items (docs/notifier.md).
    mode: Literal["immediate", "digest"] = "immediate"
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")] | None = None


class WeComRoute(_Route):
    channel: Literal["wecom"]
    webhook: Url


class DingTalkRoute(_Route):
    channel: Literal["dingtalk"]
    webhook: Url
    secret: str | None = None  # 加签: the robot's SEC… secret


class EmailRoute(_Route):
    channel: Literal["email"]
    to: Annotated[tuple[Address, ...], Field(min_length=1)]


class WebhookRoute(_Route):
    channel: Literal["webhook"]
    url: Url
    # Standard Webhooks signing key, "whsec_" + base64 of 24–64 random bytes; unset: unsigned.
    secret: Annotated[str, StringConstraints(pattern=r"^whsec_[A-Za-z0-9+/]{32,}={0,2}$")] | None = None


Route = Annotated[WeComRoute | DingTalkRoute | EmailRoute | WebhookRoute, Field(discriminator="channel")]


class RoutesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    departments: dict[str, list[Route]] = {}


@dataclass(frozen=True)
class Target:
    channel: str
    recipient: str  # stable label: the delivery key's recipient
    address: str  # e-mail address or URL
    route: _Route


class RoutesError(ValueError):
    pass


def _targets(route: _Route) -> list[Target]:
    if isinstance(route, EmailRoute):
        return [Target("email", f"email:{a.lower()}", a, route) for a in route.to]
    url = route.url if isinstance(route, WebhookRoute) else route.webhook
    label = route.name or hashlib.sha256(url.encode()).hexdigest()[:12]
    return [Target(route.channel, f"{route.channel}:{label}", url, route)]


class Routes:
    def __init__(self, spec: RoutesFile) -> None:
        self._by_department = {code: [t for r in routes for t in _targets(r)] for code, routes in spec.departments.items()}
        self._by_recipient: dict[str, Target] = {}
        for target in (t for targets in self._by_department.values() for t in targets):
            known = self._by_recipient.setdefault(target.recipient, target)
            if known.address != target.address:
                raise RoutesError(f"recipient {target.recipient!r} names two different addresses; give them distinct names")

    @classmethod
    def load(cls, path: Path | None, catalog: Catalog) -> Routes:
        if path is None:
            return cls(RoutesFile())
        try:
            spec = RoutesFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise RoutesError(f"{path}: {exc}") from exc
        known = {d.code for d in catalog.departments}
        if unknown := sorted(set(spec.departments) - known):
            raise RoutesError(f"{path}: departments not in the plan catalog: {', '.join(unknown)}")
        return cls(spec)

    def unrouted(self, catalog: Catalog) -> list[str]:
        """The plan's departments (units, not collectives: a collective has no address of its own) that no
        route reaches at any level: their notices would go nowhere."""
        return [d.code for d in catalog.departments if d.kind == "unit" and not self._by_department.get(d.code)]

    def targets(self, department: str, level: int) -> list[Target]:
        """The department's addresses for a level; empty when it has none (the caller reports it)."""
        return [t for t in self._by_department.get(department, ()) if level in t.route.levels]

    def email_targets(self, department: str) -> list[Target]:
        """The department's e-mail addresses, whatever their levels and mode: where a document is mailed."""
        return [t for t in self._by_department.get(department, ()) if t.channel == "email"]

    def digest_targets(self) -> dict[str, list[Target]]:
        """Department → its addresses that take the daily digest instead of single notices."""
        found = {code: [t for t in targets if t.route.mode == "digest"] for code, targets in self._by_department.items()}
        return {code: targets for code, targets in found.items() if targets}

    def target(self, recipient: str) -> Target | None:
        return self._by_recipient.get(recipient)

    def plan(self, departments: Iterable[str], level: int) -> tuple[dict[Target, list[str]], list[str]]:
        """Each target and the departments it is reached for (a shared group robot gets one notice),
        and the departments that have no address for this level."""
        reached: dict[Target, list[str]] = {}
        unrouted = []
        for code in departments:
            targets = self.targets(code, level)
            if not targets:
                unrouted.append(code)
            # A digest address hears of it in the next digest, not now.
            for target in (t for t in targets if t.route.mode == "immediate"):
                reached.setdefault(target, []).append(code)
        return reached, unrouted


def local_routes(catalog: Catalog, domain: str = "departments.duban.test") -> dict:
    """A routes file sending every department's notices by e-mail to `<code>@<domain>`: what `make run`
    and docker-compose use, so every notice lands in the local mail catcher (or Mailpit)."""
    return {"departments": {d.code: [{"channel": "email", "to": [f"{d.code}@{domain}"]}]
                            for d in catalog.departments if d.kind == "unit"}}
