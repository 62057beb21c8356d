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


def test_phone_numbers_lifecycle(tmp_path):
    """`samvad phone add|list|url|remove`: a number routed to a key, the URLs to paste into each
    carrier's console (their tokens open that number's answer webhook), then removed."""
    from samvad.settings import load_settings, secret
    from samvad.telephony import signing

    with postgres(tmp_path) as dsn:
        env = {
            **os.environ,
            "SAMVAD_DATABASE_URL": dsn,
            "SAMVAD_REDIS_URL": "redis://127.0.0.1:1/0",
            "SAMVAD_TELEPHONY__PUBLIC_URL": "https://voice.example.com",
            "COLUMNS": "250",
        }
        key_id = re.search(r"key (\d+)", _samvad(env, "keys", "create", "callcentre").stdout).group(1)
        added = _samvad(
            env, "phone", "add", "08012345678", "--key-id", key_id, "--language", "hi-IN", "--greeting", "Namaste!"
        )
        assert added.returncode == 0 and "+918012345678 -> key" in added.stdout, added.stdout + added.stderr
        assert _samvad(env, "phone", "add", "+91801", "--key-id", key_id).returncode == 1  # not a number
        assert _samvad(env, "phone", "add", "+918012345679", "--key-id", key_id, "--language", "xx").returncode == 1
        assert "+918012345678" in _samvad(env, "phone", "list").stdout
        too_long = _samvad(env, "phone", "add", "+918012345679", "--key-id", key_id, "--greeting", "x" * 501)
        assert too_long.returncode == 1 and "500 characters" in too_long.stdout
        twilio = _samvad(env, "phone", "url", "twilio", "+918012345678").stdout
        assert "https://voice.example.com/api/v1/telephony/twilio/answer" in twilio and "twilio_auth_token" in twilio
        plivo = _samvad(env, "phone", "url", "plivo", "+918012345678", "--days", "30").stdout
        token = re.search(r"/api/v1/telephony/plivo/answer\?token=(\w+)", plivo).group(1)
        assert "plivo_auth_token" in plivo  # how to have Plivo's signature checked too
        verdict, route_id = signing.check(secret(load_settings().service, "phone"), token, "a", "plivo")
        assert verdict == "ok" and route_id is not None
        assert signing.check(secret(load_settings().service, "phone"), token, "a", "exotel")[0] == "invalid"
        served = {**env, "SAMVAD_RAG__KNOWLEDGE_BASES": '["cards"]'}
        # Deny by default: a key made without --kb may use only the default knowledge base.
        denied = _samvad(served, "phone", "add", "+918012345670", "--key-id", key_id, "--kb", "cards")
        assert denied.returncode == 1 and "one of default" in denied.stdout, denied.stdout
        every = _samvad(served, "keys", "create", "all-kbs", "--kb", "*")
        assert every.returncode == 0, every.stdout + every.stderr
        every_id = re.search(r"key (\d+)", every.stdout).group(1)
        listing = _samvad(served, "keys", "list").stdout
        assert re.search(r"all-kbs.*every one", listing) and re.search(r"callcentre.*default only", listing)
        routed = _samvad(served, "phone", "add", "+918012345670", "--key-id", every_id, "--kb", "cards")
        assert routed.returncode == 0, routed.stdout + routed.stderr
        assert "cards" in _samvad(served, "phone", "list").stdout
        unknown = _samvad(served, "phone", "add", "+918012345671", "--key-id", every_id, "--kb", "loans")
        assert unknown.returncode == 1 and "unknown knowledge base 'loans'" in unknown.stdout
        # A key limited to `cards`: listed so, and its numbers answer from nothing else.
        assert _samvad(served, "keys", "create", "other", "--kb", "loans").returncode == 1  # not served
        limited = _samvad(served, "keys", "create", "cards-only", "--kb", "cards")
        assert limited.returncode == 0, limited.stdout + limited.stderr
        limited_id = re.search(r"key (\d+)", limited.stdout).group(1)
        assert re.search(r"cards-only.*\bcards\b", _samvad(served, "keys", "list").stdout)
        not_its = _samvad(served, "phone", "add", "+918012345672", "--key-id", limited_id, "--kb", "default")
        assert not_its.returncode == 1 and "one of cards" in not_its.stdout
        assert _samvad(env, "phone", "remove", "+918012345678").returncode == 0
        assert _samvad(env, "phone", "url", "exotel", "+918012345678").returncode == 1  # no longer routed
