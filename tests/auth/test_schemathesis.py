"""A fuzzer working from each read API's committed OpenAPI document, with a district-office token, finds
no server error and no answer the document does not describe (intake's run is in tests/intake/)."""

from __future__ import annotations

import asyncio

import pytest

from tests.auth.conftest import escalate, service_api
from tests.conftest import schemathesis

pytestmark = pytest.mark.database


@pytest.mark.parametrize("service", ["tracker", "metrics", "notifier"])
async def test_schemathesis_finds_no_server_error(service, database_url, kafka_bootstrap, tokens, tmp_path):
    async with service_api(service, database_url, kafka_bootstrap, tokens) as api:
        if service == "notifier":
            await escalate(api, "T09")  # something to read and acknowledge
        result = await asyncio.to_thread(schemathesis, api.openapi, api.url, tokens.issue(), tmp_path, max_examples=60)
    (tmp_path / "schemathesis.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
