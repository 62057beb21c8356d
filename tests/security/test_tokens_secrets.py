"""Forged, expired, borrowed and malformed resume tokens; secrets that anyone could know."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from pydantic import SecretStr

from samvad.api import tokens
from samvad.settings import REPO_ROOT, ConfigError, ServiceSettings, secret

pytestmark = pytest.mark.unit
SECRET = "x" * 43


def test_a_token_is_good_for_its_session_key_and_lifetime_only():
    t = tokens.make(SECRET, "s1", 7, ttl_s=60, now=1000)
    assert tokens.check(SECRET, t, "s1", 7, now=1030) == "ok"
    assert tokens.check(SECRET, t, "s1", 7, now=1061) == "expired"
    assert tokens.check(SECRET, t, "s2", 7, now=1030) == "invalid"  # another session
    assert tokens.check(SECRET, t, "s1", 8, now=1030) == "invalid"  # another key
    assert tokens.check("y" * 43, t, "s1", 7, now=1030) == "invalid"  # the secret rotated
    forged = t.replace(".1060.", ".9999999999.")  # a longer life, same MAC
    assert tokens.check(SECRET, forged, "s1", 7, now=1030) == "invalid"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "0" * 32,
        "v1.7.1060",
        "v1.7.1060.é" + "0" * 31,
        "v1.7.1060." + "0" * 500,
        "v1.-7.1060.00",
        "v1.7.1e9.00",
        "v1.7." + "9" * 40 + ".00",
        "\x00",
        "v1...",
    ],
)
def test_malformed_tokens_are_invalid_not_errors(token):
    assert tokens.check(SECRET, token, "s1", 7) == "invalid"


@pytest.mark.parametrize(
    "value", [None, "", "samvad-dev-secret-change-me", "changeme", "short", "Zq8vR2mW9xK4tL7pN3cB6hJ1fD5gS0y"]
)
def test_missing_known_or_short_secrets_are_refused(value):
    service = ServiceSettings(key_secret=SecretStr(value) if value is not None else None)
    with pytest.raises(ConfigError, match="SAMVAD_SERVICE__KEY_SECRET|random"):
        secret(service, "key")


def test_the_service_refuses_to_deploy_without_secrets():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMVAD_SERVICE__")}
    code = "from deployments.app import build_app; build_app({'database_url': 'postgresql://x/y', 'redis_url': 'redis://x'})"
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode != 0 and "ConfigError" in r.stderr and "SAMVAD_SERVICE__KEY_SECRET" in r.stderr


def test_development_secrets_are_random_private_and_kept(tmp_path, monkeypatch):
    from samvad.dev_secrets import with_dev_secrets
    from samvad.settings import Settings

    def fresh(folder):  # a new process: nothing exported yet
        for name in ("KEY", "RESUME", "PHONE"):
            monkeypatch.delenv(f"SAMVAD_SERVICE__{name}_SECRET", raising=False)
        return Settings(data_dir=folder)

    first = with_dev_secrets(fresh(tmp_path))
    stored = tmp_path / "secrets.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    keys = json.loads(stored.read_text())
    assert secret(first.service, "key") == keys["key"] != keys["resume"] == secret(first.service, "resume")
    assert len(keys["key"]) >= 32
    # Phone tokens have a secret of their own (rotated without ending resumable sessions).
    assert secret(first.service, "phone") == keys["phone"] not in (keys["key"], keys["resume"])
    again = with_dev_secrets(fresh(tmp_path))  # the next start reuses them
    assert secret(again.service, "key") == keys["key"]
    other = with_dev_secrets(fresh(tmp_path / "elsewhere"))  # another checkout: its own
    assert secret(other.service, "key") != keys["key"]
