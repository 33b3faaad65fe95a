"""`duban keys`: the real command against the session PostgreSQL; tokens are shown once, stored hashed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from services.intake import keys
from tests.conftest import ROOT

pytestmark = pytest.mark.database


def duban_keys(database_url: str, schema: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DUBAN_DATABASE_URL=database_url, DUBAN_SCHEMA_NAME=schema)
    return subprocess.run([sys.executable, "-m", "entrypoints.cli", "keys", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


async def test_create_list_rotate_revoke(database_url, intake_schema, intake):
    created = duban_keys(database_url, intake_schema, "create", "tax-bureau", "--label", "金税三期")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("dbk_tax-bureau_") and len(token) == len("dbk_tax-bureau_") + 43
    key_id = token[:len("dbk_tax-bureau_") + 8]
    assert f"created {key_id}" in created.stderr
    stored = await intake.pool.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key_id)
    assert stored["token_sha256"] == hashlib.sha256(token.encode()).digest()
    assert token not in str(dict(stored))
    assert await keys.authenticate(intake.pool, token) == "tax-bureau"

    listing = duban_keys(database_url, intake_schema, "list")
    assert key_id in listing.stdout and "active" in listing.stdout and "金税三期" in listing.stdout
    assert token not in listing.stdout

    rotated = duban_keys(database_url, intake_schema, "rotate", key_id, "--grace-hours", "1")
    assert rotated.returncode == 0, rotated.stderr
    new_token = rotated.stdout.strip()
    assert await keys.authenticate(intake.pool, new_token) == "tax-bureau"
    assert await keys.authenticate(intake.pool, token) == "tax-bureau"  # within its grace hour
    new_id = new_token[:len("dbk_tax-bureau_") + 8]
    old_line, = [line for line in duban_keys(database_url, intake_schema, "list").stdout.splitlines()
                 if line.startswith(key_id)]
    assert old_line.split()[2] == "expiring" and new_id in old_line.split()  # which key replaced it

    revoked = duban_keys(database_url, intake_schema, "revoke", key_id)
    assert revoked.returncode == 0 and f"revoked {key_id}" in revoked.stdout
    assert await keys.authenticate(intake.pool, token) is None
    assert key_id not in duban_keys(database_url, intake_schema, "list").stdout
    assert key_id in duban_keys(database_url, intake_schema, "list", "--all").stdout

    immediate = duban_keys(database_url, intake_schema, "rotate", new_token[:len("dbk_tax-bureau_") + 8],
                           "--grace-hours", "0")
    assert await keys.authenticate(intake.pool, new_token) is None
    assert await keys.authenticate(intake.pool, immediate.stdout.strip()) == "tax-bureau"


@pytest.mark.parametrize(("args", "message"), [
    (("create", "ministry-of-magic"), "no department 'ministry-of-magic' in the plan catalog"),
    (("create", "subdistricts-town"), "subdistricts-town is a collective"),
    (("revoke", "dbk_tax-bureau_nothere"), "no key 'dbk_tax-bureau_nothere'"),
    (("rotate", "dbk_tax-bureau_nothere"), "no valid key 'dbk_tax-bureau_nothere'"),
])
def test_errors_exit_1_with_the_reason(database_url, intake_schema, args, message):
    result = duban_keys(database_url, intake_schema, *args)
    assert result.returncode == 1
    assert message in result.stderr


def test_before_migrations_the_command_says_what_to_do(database_url):
    result = duban_keys(database_url, "intake_never_migrated", "list")
    assert result.returncode == 1
    assert "run `duban migrate` first" in result.stderr
