"""Attacks on what a tenant may reach: knowledge bases another key was never given (or has lost
since), a key revoked without its broadcast, and error bodies that would echo a request back.
In-process app, real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from starlette.testclient import TestClient

from samvad.api.app import build_api
from samvad.api.frontend import Frontend
from samvad.settings import load_settings, secret
from samvad.storage.database import Database
from samvad.storage.repository import hash_key
from tests.integration.conftest import dsn, rurl  # noqa: F401 - the fixtures, shared
from tests.integration.test_api import (  # noqa: F401 - the fixtures, shared
    InProcessBackend,
    _key,
    api_settings,
    client,
    key,
)

pytestmark = pytest.mark.integration


def test_a_session_answers_from_the_knowledge_base_it_was_opened_with(api_settings, key):
    """A session opened with a knowledge base (REST or voice) has every turn searched in it; an
    unknown name is refused with the names to choose from; a session without one uses the default.
    Deny by default: a key made without a list may use only the default one."""
    from dataclasses import replace

    from starlette.websockets import WebSocketDisconnect

    from rag_index.pipeline import local_runner
    from samvad.turn import TurnRunner

    s = api_settings.model_copy(update={"rag": api_settings.rag.model_copy(update={"knowledge_bases": ["acme"]})})
    runner = local_runner(s)
    asked: list[str | None] = []

    class Recording:
        async def alookup(self, text, library, k, query=None, knowledge_base=None):
            asked.append(knowledge_base)
            return await runner.engines.retriever.alookup(text, library, k, query)

    limited = _key(s, knowledge_bases=["acme"])
    every = _key(s, knowledge_bases=["*"])
    db = Database(s)
    app = build_api()
    recording = TurnRunner(replace(runner.engines, retriever=Recording()), s)
    Frontend(s, db, InProcessBackend(recording, db, s)).configure(app)
    with TestClient(app, headers={"X-API-Key": every}) as c:
        # A key made without --kb: the default knowledge base only, and the refusal names no other.
        denied = c.post("/api/v1/sessions", json={"knowledge_base": "acme"}, headers={"X-API-Key": key})
        assert denied.status_code == 400 and denied.json()["error"]["code"] == "unknown_knowledge_base"
        assert denied.json()["error"]["message"].endswith("one of default"), denied.text
        refused = c.post("/api/v1/sessions", json={"knowledge_base": "other"})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "unknown_knowledge_base" and "default, acme" in error["message"]
        session = c.post("/api/v1/sessions", json={"knowledge_base": "acme"}).json()
        assert session["knowledge_base"] == "acme"
        turn = {"session_id": session["id"], "text": "what is the stub answer", "speak": False}
        assert c.post("/api/v1/turn", json=turn).status_code == 200
        assert c.post("/api/v1/turn", json={"text": "what is the stub answer", "speak": False}).status_code == 200
        assert asked == ["acme", None]
        with c.websocket_connect("/api/v1/voice-session") as ws:
            ws.send_text(json.dumps({"type": "session.start", "api_key": every, "knowledge_base": "acme"}))
            assert json.loads(ws.receive_text())["type"] == "session.started"
            ws.send_text(json.dumps({"type": "text.input", "text": "what is the stub answer"}))
            while json.loads(ws.receive_text())["type"] != "turn.done":
                pass
        assert asked[-1] == "acme"
        with c.websocket_connect("/api/v1/voice-session") as ws:
            ws.send_text(json.dumps({"type": "session.start", "api_key": every, "knowledge_base": "other"}))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
        assert closed.value.code == 4400 and closed.value.reason.startswith("unknown knowledge base")
        # A key limited to `acme`: its sessions answer from it by default; the default one is not its.
        as_limited = {"X-API-Key": limited}
        assert c.post("/api/v1/sessions", json={}, headers=as_limited).json()["knowledge_base"] == "acme"
        refused = c.post("/api/v1/sessions", json={"knowledge_base": "default"}, headers=as_limited)
        assert refused.status_code == 400 and refused.json()["error"]["message"].endswith("one of acme")
        ask = {"text": "what is the stub answer", "speak": False}
        assert c.post("/api/v1/turn", json=ask, headers=as_limited).status_code == 200
        assert asked[-1] == "acme"


def test_a_key_is_rechecked_on_every_turn_and_resume(api_settings):
    """A knowledge base taken from a key ends its sessions' use of it on the next turn and
    resume (without naming the others); a key revoked in the database with no broadcast (Redis
    never told) ends its live call at its next turn."""
    from starlette.websockets import WebSocketDisconnect

    from rag_index.pipeline import local_runner

    s = api_settings.model_copy(
        update={
            "rag": api_settings.rag.model_copy(update={"knowledge_bases": ["acme"]}),
            "limits": api_settings.limits.model_copy(update={"key_recheck_s": 0.0}),
        }
    )
    key = _key(s, knowledge_bases=["acme", "default"])
    db = Database(s)
    app = build_api()
    Frontend(s, db, InProcessBackend(local_runner(s), db, s)).configure(app)
    ask = {"text": "what is the stub answer", "speak": False}

    def sql(query: str) -> None:
        async def run() -> None:
            conn = await asyncpg.connect(s.database_url)
            try:
                await conn.execute(query, hash_key(key, secret(load_settings().service, "key")))
            finally:
                await conn.close()

        asyncio.run(run())

    with TestClient(app, headers={"X-API-Key": key}) as c:
        session = c.post("/api/v1/sessions", json={"knowledge_base": "acme"}).json()
        resume = None
        with c.websocket_connect("/api/v1/voice-session") as ws:
            ws.send_text(json.dumps({"type": "session.start", "api_key": key, "knowledge_base": "acme"}))
            started = json.loads(ws.receive_text())
            resume = (started["session_id"], started["resume_token"])
        assert c.post("/api/v1/turn", json=ask | {"session_id": session["id"]}).status_code == 200
        sql("UPDATE api_keys SET knowledge_bases = ARRAY['default'] WHERE key_hash = $1")
        r = c.post("/api/v1/turn", json=ask | {"session_id": session["id"]})
        assert r.status_code == 403 and r.json()["error"]["code"] == "knowledge_base_not_allowed", r.text
        assert "acme" not in r.json()["error"]["message"]
        assert c.post("/api/v1/turn", json=ask).status_code == 200  # a new session, on the default one
        sid, token = resume
        with c.websocket_connect(f"/api/v1/voice-session?session_id={sid}&resume_token={token}") as ws:
            ws.send_text(json.dumps({"type": "session.start", "api_key": key}))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
        assert closed.value.code == 4403
        # Revoked in the database only: the broadcast never happened.
        with c.websocket_connect("/api/v1/voice-session") as ws:
            ws.send_text(json.dumps({"type": "session.start", "api_key": key}))
            assert json.loads(ws.receive_text())["type"] == "session.started"
            sql("UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1")
            ws.send_text(json.dumps({"type": "text.input", "text": "what is the stub answer"}))
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    event = json.loads(ws.receive_text())
                    assert event["type"] != "turn.done", "a revoked key's turn ran"
        assert closed.value.code == 4401


def test_an_error_never_echoes_more_than_a_few_hundred_characters_of_the_request(client):
    """A validation error names where the request is wrong; the client's own keys and values may
    be of any length, so what is echoed (and logged) is capped."""
    r = client.post("/api/v1/turn", json={"k" * 100_000: 1, "text": "hi"})
    assert r.status_code == 422 and len(r.json()["error"]["message"]) < 400, r.text[:500]
