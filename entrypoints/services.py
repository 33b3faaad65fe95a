"""The services the `duban` command and `duban run` know, in the order `duban run` starts them. Each
service's `cli` module declares the rest: `SERVICE` (how it is started: module, port, schema,
migrations) and `register` (the commands it adds)."""

from __future__ import annotations

from duban.service import ServiceSpec
from services.board import cli as board
from services.intake import cli as intake
from services.metrics import cli as metrics
from services.notifier import cli as notifier
from services.tracker import cli as tracker

SERVICE_CLIS = (intake, tracker, metrics, notifier, board)
SERVICES = tuple(cli.SERVICE for cli in SERVICE_CLIS)


def service_spec(name: str) -> ServiceSpec:
    """The ServiceSpec of the service called `name`."""
    return next(spec for spec in SERVICES if spec.name == name)
