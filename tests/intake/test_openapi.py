"""The committed OpenAPI document is the app's, and a fuzzer working from it finds no server error
and gets no invalid event accepted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.intake.app import openapi_document
from tests.conftest import ROOT, schemathesis
from tests.intake import schemathesis_hooks
from tests.intake.conftest import intake_settings, running_intake

COMMITTED = ROOT / "contracts" / "openapi" / "intake.json"
HOOKS = Path(schemathesis_hooks.__file__)
# Under the fixed seed the hooks bring about 30 accepted events; without them only the schema's own examples
# from this department get in (about 10), and schemathesis warns that it mostly rejected generated data.
MIN_ACCEPTED = 20


def test_committed_openapi_matches_the_app():
    assert COMMITTED.read_text(encoding="utf-8") == openapi_document(), "regenerate it: make openapi"


@pytest.mark.database
async def test_schemathesis_finds_no_server_error_and_no_accepted_invalid_event(
        database_url, intake_schema, kafka_bootstrap, tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEMATHESIS_HOOKS", str(HOOKS))
    # No rate limit: the fuzzer is to reach the contract checks, not the bucket.
    settings = intake_settings(database_url, intake_schema, kafka_bootstrap, rate_limit_per_s=1e9,
                               rate_limit_burst=10**9)
    async with running_intake(settings) as intake:
        key = await intake.key(schemathesis_hooks.DEPARTMENT)
        result = await asyncio.to_thread(schemathesis, COMMITTED, intake.url, key, tmp_path, max_examples=150,
                                         config_file=Path(__file__).with_name("schemathesis.toml"))
        accepted = await intake.pool.fetchval("SELECT count(*) FROM accepted_events")
    (tmp_path / "schemathesis.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # The accept-and-publish path is fuzzed too, not only the refusals.
    assert "mostly rejected generated data" not in result.stdout, result.stdout[-3000:]
    assert accepted >= MIN_ACCEPTED, f"only {accepted} events accepted"
