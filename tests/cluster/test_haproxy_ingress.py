"""Serve's HAProxy ingress mode (`samvad run --ingress haproxy`): REST and voice through HAProxy,
callers' addresses as HAProxy saw them, HAProxy's own listeners on loopback (the scenario runs in
its own process: Serve reads its ingress mode when it is imported)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.own_ray]


def test_rest_and_voice_through_haproxy_with_the_callers_own_address():
    script = Path(__file__).with_name("haproxy_ingress.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    seen = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"haproxy"')))
    assert seen["bad_key_statuses"] == [401, 401, 401, 429, 429]
