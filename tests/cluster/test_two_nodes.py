"""Past one node: the session tier on a two-node Ray cluster, one node removed mid-conversation
(the scenario runs in its own process: one Ray cluster per process)."""

import pytest

from tests.cluster.scenario import run

pytestmark = [pytest.mark.e2e, pytest.mark.own_ray]


def test_a_node_removed_mid_conversation_loses_nothing():
    seen = run("two_nodes.py", "conversations")
    assert seen["on_removed_node"] >= 1 and seen["rows"] == 6 * seen["conversations"]
