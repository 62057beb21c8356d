"""`samvad db migrate` and `samvad keys create|list|revoke` against a real PostgreSQL."""

import os
import re
import subprocess
import sys

import pytest

from tests.servers import postgres

pytestmark = pytest.mark.integration


def _samvad(env, *args):
    return subprocess.run([sys.executable, "-m", "samvad", *args], capture_output=True, text=True, timeout=120, env=env)


def test_keys_lifecycle(tmp_path):
    with postgres(tmp_path) as dsn:
        env = {**os.environ, "SAMVAD_DATABASE_URL": dsn, "SAMVAD_REDIS_URL": "redis://127.0.0.1:1/0", "COLUMNS": "200"}
        migrated = _samvad(env, "db", "migrate")
        assert migrated.returncode == 0 and "0001_init.sql" in migrated.stdout, migrated.stdout + migrated.stderr
        assert "up to date" in _samvad(env, "db", "migrate").stdout
        created = _samvad(env, "keys", "create", "ops-team")
        assert created.returncode == 0, created.stderr
        key = re.search(r"sk_samvad_\S+", created.stdout).group()
        key_id = re.search(r"key (\d+)", created.stdout).group(1)
        listing = _samvad(env, "keys", "list").stdout
        assert "ops-team" in listing and key not in listing  # the key itself is never shown again
        revoked = _samvad(env, "keys", "revoke", key_id)  # Redis is unreachable here: the database decides
        assert revoked.returncode == 0 and "Redis could not be told" in revoked.stdout, revoked.stdout
        again = _samvad(env, "keys", "revoke", key_id)
        assert again.returncode == 1 and "no active key" in again.stdout
