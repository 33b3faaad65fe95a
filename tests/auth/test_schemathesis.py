"""A fuzzer working from each read API's committed OpenAPI document, with a district-office token, finds
no server error and no answer the document does not describe (intake's run is in tests/intake/)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.auth.conftest import escalate, service_api

pytestmark = pytest.mark.database


@pytest.mark.parametrize("service", ["tracker", "metrics", "notifier"])
async def test_schemathesis_finds_no_server_error(service, database_url, kafka_bootstrap, tokens, tmp_path):
    async with service_api(service, database_url, kafka_bootstrap, tokens) as api:
        if service == "notifier":
            await escalate(api, "T09")  # something to read and acknowledge
        result = await asyncio.to_thread(schemathesis, api.openapi, api.url, tokens.issue(), tmp_path)
    (tmp_path / "schemathesis.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def schemathesis(document: Path, url: str, token: str, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", str(document), "--url", url,
         "-H", f"Authorization: Bearer {token}", "--checks",
         "not_a_server_error,negative_data_rejection,status_code_conformance,content_type_conformance,"
         "response_schema_conformance,response_headers_conformance",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "60", "--workers", "1",
         "--seed", "2021", "--suppress-health-check", "all"],
        cwd=workdir, capture_output=True, text=True, timeout=280)
