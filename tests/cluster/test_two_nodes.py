"""Past one node: the session tier on a two-node Ray cluster, one node removed mid-conversation
(the scenario runs in its own process: one Ray cluster per process)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.own_ray]


def test_a_node_removed_mid_conversation_loses_nothing():
    script = Path(__file__).with_name("two_nodes.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    seen = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"conversations"')))
    assert seen["on_removed_node"] >= 1 and seen["rows"] == 6 * seen["conversations"]
