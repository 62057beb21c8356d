"""Rendezvous routing of conversations to Sessions replicas: every caller agrees, the load
spreads, and a replica joining or leaving moves only its own share."""

import uuid

import pytest

from actors.router import owner

pytestmark = pytest.mark.unit


def test_owner_is_stable_spread_and_moves_little():
    keys = [str(uuid.uuid4()) for _ in range(3000)]
    three = ["r1", "r2", "r3"]
    placed = {k: owner(k, three) for k in keys}
    assert placed == {k: owner(k, list(reversed(three))) for k in keys}  # order of the replica list is irrelevant
    counts = [list(placed.values()).count(r) for r in three]
    assert min(counts) > 0.8 * len(keys) / 3  # spread evenly
    after_loss = {k: owner(k, ["r1", "r3"]) for k in keys}
    moved = [k for k in keys if after_loss[k] != placed[k]]
    assert all(placed[k] == "r2" for k in moved)  # only the lost replica's conversations move
    after_join = {k: owner(k, three + ["r4"]) for k in keys}
    assert all(after_join[k] in (placed[k], "r4") for k in keys)  # a new replica only takes, never shuffles
