"""What a service declares about itself for the `duban` command and `duban run` (the entry package,
`entrypoints/`): its name, the module `python -m` runs, its settings class and its migrations. Each
service's `cli.py` holds one `SERVICE`; the library itself names no service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from duban.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str  # the service's package: `python -m <module>` runs it
    settings: type[ServiceSettings]
    migrations: Path  # its schema's NNN_name.sql files, applied after the platform's (duban/migrations/)

    @property
    def port_offset(self) -> int:
        """`duban run --base-port B` puts the service on B + this: its default port's distance from the shared
        default, so the default base gives every service its default port."""
        return _default(self.settings, "http_port") - _default(ServiceSettings, "http_port")

    @property
    def schema(self) -> str:
        return _default(self.settings, "schema_name")


def _default(settings: type[ServiceSettings], field: str):
    return settings.model_fields[field].default
