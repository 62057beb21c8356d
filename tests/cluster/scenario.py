"""Runs a scenario script of this folder in its own process (one Ray per process) and returns the
JSON line it prints; fails the test with its output when it exits non-zero."""

import json
import subprocess
import sys
from pathlib import Path


def run(script: str, first_key: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name(script))], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"' + first_key + '"')))
