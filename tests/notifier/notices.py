"""The notices' published contracts (contracts/notices/): what a webhook receiver may rely on."""

from __future__ import annotations

import json
from functools import cache

from jsonschema import Draft202012Validator

from tests.conftest import ROOT

NOTICES_DIR = ROOT / "contracts" / "notices"


@cache
def notice_validator(type_: str) -> Draft202012Validator:
    schema = json.loads((NOTICES_DIR / f"{type_}.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def notice_errors(payload: dict) -> list[str]:
    """'/path: message' for each way `payload` breaks the contract of its type."""
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in notice_validator(payload["type"]).iter_errors(payload)]
