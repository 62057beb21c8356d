"""Session actors: idle exit and rehydration, bounded database connections."""

import time
import uuid

import pytest
import ray

from tests.e2e.conftest import IDLE_SECONDS

pytestmark = pytest.mark.e2e


def _actor_alive(sid: str) -> bool:
    try:
        ray.get_actor(f"session:{sid}", namespace="samvad")
        return True
    except ValueError:
        return False


def test_idle_actor_exits_and_the_session_continues(client, db):
    sid = client.post("/api/v1/sessions", json={}).json()["id"]
    assert _actor_alive(sid)  # created when the session opened, before any utterance
    r = client.post("/api/v1/turn", json={"session_id": sid, "text": "How do I open a fixed deposit?", "speak": False})
    assert r.status_code == 200
    deadline = time.monotonic() + IDLE_SECONDS + 15
    while _actor_alive(sid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _actor_alive(sid), "idle session actor did not exit"
    r = client.post("/api/v1/turn", json={"session_id": sid, "text": "Can I close it early?", "speak": False})
    assert r.status_code == 200, r.text
    assert r.json()["response"]["metadata"]["context_messages"] == 2
    rows = db("SELECT role FROM messages WHERE session_id = $1 ORDER BY id", uuid.UUID(sid))
    assert len(rows) == 4


def test_database_connections_stay_bounded_as_sessions_grow(client, db, serve_app):
    sessions = [client.post("/api/v1/sessions", json={}).json()["id"] for _ in range(12)]
    for sid in sessions:
        assert client.post("/api/v1/turn", json={"session_id": sid, "text": "What is the UPI limit?", "speak": False}).status_code == 200
    (row,) = db("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()")
    # Store replicas (max 2 in serve_config.yaml) x pool size 5, plus this query's connection.
    assert row["n"] <= 2 * 5 + 1 < len(sessions)
