"""The session tier on the running graph (two Sessions replicas, two ingress replicas):
conversations hosted many per replica, one turn at a time per conversation across ingress
replicas, passivation and rehydration, a dead host taken over, bounded database connections."""

import concurrent.futures
import time
import uuid

import httpx
import pytest

from tests.e2e.helpers import host_of, kill_host_of
from tests.graph import IDLE_SECONDS, INGRESS_REPLICAS, PORT, SESSIONS_REPLICAS

pytestmark = pytest.mark.e2e


def _ask(client, sid, text, **kw):
    return client.post("/api/v1/turn", json={"session_id": sid, "text": text, "speak": False, **kw})


def test_conversations_spread_over_hosts_without_a_process_each(client, db):
    import ray

    def actors() -> set[str]:  # Serve's own (replicas, which may be replaced meanwhile) aside
        return {
            a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if not a["name"].startswith("SERVE_")
        }

    before = actors()
    sessions = [client.post("/api/v1/sessions", json={}).json()["id"] for _ in range(12)]
    for sid in sessions:
        assert _ask(client, sid, "What is the UPI limit per day?").status_code == 200
    hosts = {host_of(db, sid) for sid in sessions}
    assert len(hosts) == SESSIONS_REPLICAS  # rendezvous hashing spreads them
    assert actors() == before  # no actor (process) per conversation


def test_concurrent_turns_of_one_session_through_both_ingresses_never_interleave(client, db):
    sid = client.post("/api/v1/sessions", json={}).json()["id"]
    questions = [f"Question {i}: what is the UPI limit per day?" for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda q: _ask(client, sid, q), questions))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert len({r.headers["X-Samvad-Replica"] for r in responses}) == INGRESS_REPLICAS
    rows = db("SELECT turn_id, role FROM messages WHERE session_id = $1 ORDER BY id", uuid.UUID(sid))
    assert len(rows) == 20
    for i in range(0, 20, 2):  # each turn's question is followed by its own answer
        assert (rows[i]["role"], rows[i + 1]["role"]) == ("user", "assistant")
        assert rows[i]["turn_id"] == rows[i + 1]["turn_id"]
    # Each turn saw every turn before it: the history grew by one exchange per turn.
    contexts = sorted(r.json()["response"]["metadata"]["context_messages"] for r in responses)
    assert contexts == [min(2 * i, 6) for i in range(10)]


def test_idle_conversation_is_passivated_and_reactivates_with_its_history(client, db):
    sid = client.post("/api/v1/sessions", json={}).json()["id"]
    assert _ask(client, sid, "How do I open a fixed deposit?").status_code == 200
    assert host_of(db, sid) is not None
    deadline = time.monotonic() + IDLE_SECONDS + 15
    while host_of(db, sid) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert host_of(db, sid) is None, "the idle conversation was not passivated"
    r = _ask(client, sid, "Can I close it early?")
    assert r.status_code == 200, r.text
    assert r.json()["response"]["metadata"]["context_messages"] == 2
    assert len(db("SELECT role FROM messages WHERE session_id = $1", uuid.UUID(sid))) == 4


def test_owner_killed_mid_conversation_another_replica_continues(client, db):
    sid = client.post("/api/v1/sessions", json={}).json()["id"]
    for q in ["What is the UPI limit per day?", "How do I reset my UPI PIN?"]:
        assert _ask(client, sid, q).status_code == 200
    killed = kill_host_of(db, sid)
    r = _ask(client, sid, "Can I change my UPI limit?")
    assert r.status_code == 200, r.text
    assert r.json()["response"]["metadata"]["context_messages"] == 4  # the whole history
    assert host_of(db, sid) not in (None, killed)
    rows = db("SELECT turn_id, role FROM messages WHERE session_id = $1 ORDER BY id", uuid.UUID(sid))
    assert len(rows) == 6 and len({(r["turn_id"], r["role"]) for r in rows}) == 6


def test_session_open_is_one_insert(client):
    t = time.perf_counter()
    for _ in range(20):
        assert client.post("/api/v1/sessions", json={}).status_code == 201
    assert (time.perf_counter() - t) / 20 < 1.0  # not a process start (~2 s before)


def test_database_connections_stay_bounded_as_sessions_grow(client, db):
    sessions = [client.post("/api/v1/sessions", json={}).json()["id"] for _ in range(30)]
    for sid in sessions:
        assert _ask(client, sid, "What is the UPI limit?").status_code == 200
    (row,) = db("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()")
    # Ingress replicas x 4 + Sessions replicas x 5, plus this query's connection.
    assert row["n"] <= INGRESS_REPLICAS * 4 + SESSIONS_REPLICAS * 5 + 1 < len(sessions)


def test_idempotency_key_returns_the_same_turn(client, db):
    headers = {"Idempotency-Key": f"idem-{uuid.uuid4().hex}"}
    body = {"text": "How do I block my lost debit card?", "speak": False}
    first = client.post("/api/v1/turn", json=body, headers=headers)
    again = client.post("/api/v1/turn", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    sid = first.json()["session_id"]
    assert len(db("SELECT 1 FROM messages WHERE session_id = $1", uuid.UUID(sid))) == 2
    other = client.post("/api/v1/turn", json=body | {"text": "Something else?"}, headers=headers)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    s1 = client.post("/api/v1/sessions", json={}, headers={"Idempotency-Key": headers["Idempotency-Key"] + "-s"})
    s2 = client.post("/api/v1/sessions", json={}, headers={"Idempotency-Key": headers["Idempotency-Key"] + "-s"})
    assert s1.status_code == s2.status_code == 201 and s1.json()["id"] == s2.json()["id"]


def test_another_keys_session_is_not_found(client, serve_app):
    from tests.e2e.helpers import make_key

    sid = client.post("/api/v1/sessions", json={}).json()["id"]
    assert _ask(client, sid, "What is the UPI limit?").status_code == 200
    other = make_key(serve_app, "other-tenant")
    with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", headers={"X-API-Key": other}, timeout=60) as c:
        for r in (c.get(f"/api/v1/sessions/{sid}"), c.get(f"/api/v1/sessions/{sid}/messages"), _ask(c, sid, "hi")):
            assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found", r.text
