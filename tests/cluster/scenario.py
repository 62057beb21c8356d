"""Runs a scenario script of this folder in its own process (one Ray per process) and returns the
JSON line it prints; fails the test with its output when it exits non-zero."""

import json
import os
import subprocess
import sys
from pathlib import Path

from deployments.haproxy import PORT_SETTINGS

INGRESS_SETTINGS = {"RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HAPROXY_BINARY_PATH", *PORT_SETTINGS}


def run(script: str, first_key: str) -> dict:
    # The scenario chooses its own ingress mode: not the suite graph's (HAProxy on its ports).
    env = {k: v for k, v in os.environ.items() if k not in INGRESS_SETTINGS}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name(script))], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"' + first_key + '"')))
