"""The HTTP and WebSocket API without Ray: `samvad.api` driven with Starlette's TestClient, on
real PostgreSQL and Redis, with turns run by a session host in this process (the `Backend`
the ingress deployment provides over Serve handles)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import asyncpg
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from actors.host import SessionHost
from samvad.api.app import build_api
from samvad.api.frontend import Frontend
from samvad.settings import REPO_ROOT, load_settings, secret
from samvad.storage.database import Database
from samvad.storage.repository import Repository

pytestmark = pytest.mark.integration
ADMIN = "adm-" + "a" * 32


class InProcessBackend:
    """Turns run by a `SessionHost` in this process; stages called directly."""

    def __init__(self, runner, db: Database, settings) -> None:
        self.runner = runner
        self.host = SessionHost(f"test-{uuid.uuid4().hex[:8]}", runner, db, settings.sessions)
        self._started: asyncio.Task | None = None

    async def _ready(self) -> SessionHost:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(self.host.start())
        await asyncio.shield(self._started)
        return self.host

    async def answer(self, session_id, request):
        return await (await self._ready()).answer(session_id, request)

    async def stream(self, session_id, request):
        async for batch in (await self._ready()).stream(session_id, request):
            for event in batch:
                yield event

    async def settle(self, session_id, turn_id, heard, complete):
        await (await self._ready()).settle(session_id, turn_id, heard, complete)

    async def transcribe(self, audio, language):
        calls = []
        return await self.runner.engines.stt.transcribe(audio, language, calls), calls

    async def partial(self, audio, language):
        return await self.runner.engines.stt.partial(audio, language)

    async def synthesize(self, speech):
        async for chunk in self.runner.engines.tts.stream(speech, []):
            yield chunk

    def metrics_url(self) -> str:
        return "http://127.0.0.1:9/metrics"  # nothing listens: /metrics answers 500 metrics_unavailable


@pytest.fixture(scope="module")
def api_settings(dsn, rurl):
    s = load_settings(REPO_ROOT / "configs" / "stub.yaml", database_url=dsn, redis_url=rurl)
    # A register other than the built-in default, so a test can see the config is read; an admin
    # key of its own (the suite's graph sets one in the environment too).
    return s.model_copy(
        update={
            "translation": s.translation.model_copy(update={"default_mode": "modern-colloquial"}),
            "service": s.service.model_copy(update={"admin_key": SecretStr(ADMIN)}),
        }
    )


def _key(settings, **limits) -> str:
    async def make() -> str:
        repo = await Repository.connect(settings.database_url, secret(load_settings().service, "key"))
        try:
            return (await repo.create_key(f"api-{uuid.uuid4().hex[:6]}", **limits))[1]
        finally:
            await repo.close()

    return asyncio.run(make())


@pytest.fixture(scope="module")
def key(api_settings):
    return _key(api_settings)


@pytest.fixture(scope="module")
def client(api_settings, key):
    from rag_index.pipeline import local_runner

    db = Database(api_settings)
    app = build_api()
    Frontend(api_settings, db, InProcessBackend(local_runner(api_settings), db, api_settings)).configure(app)
    with TestClient(app, headers={"X-API-Key": key}) as c:
        yield c


def _sessions(dsn) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval("SELECT count(*) FROM sessions")
        finally:
            await conn.close()

    return asyncio.run(count())


def test_a_conversation_answers_and_remembers(client):
    one = client.post("/api/v1/turn", json={"text": "what is the stub answer", "speak": False})
    assert one.status_code == 200, one.text
    sid = one.json()["session_id"]
    two = client.post("/api/v1/turn", json={"session_id": sid, "text": "and then?", "speak": False})
    assert two.status_code == 200 and two.json()["session_id"] == sid
    messages = client.get(f"/api/v1/sessions/{sid}/messages").json()
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert client.get(f"/api/v1/sessions/{sid}").json()["mode"] == "modern-colloquial"  # the config's register


def test_sessions_take_their_register_from_the_request_else_the_config(client):
    assert client.post("/api/v1/sessions", json={}).json()["mode"] == "modern-colloquial"
    assert client.post("/api/v1/sessions", json={"mode": "formal"}).json()["mode"] == "formal"


@pytest.mark.parametrize(
    "body,code",
    [
        ({"text": "   "}, "text_empty"),
        ({"audio_base64": base64.b64encode(b"RIFF....not audio").decode()}, "audio_unreadable"),
        ({"audio_base64": "!!!"}, "audio_unreadable"),
    ],
)
def test_a_rejected_first_turn_creates_no_session(client, dsn, body, code):
    before = _sessions(dsn)
    r = client.post("/api/v1/turn", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == code
    assert _sessions(dsn) == before


def test_errors_say_what_and_where(client):
    r = client.post("/api/v1/turn", content=b'{"text": "hi",, }', headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "not valid JSON" in message and "character 14" in message, message
    r = client.post("/api/v1/turn", content=b"text=hi", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    assert "application/json" in r.json()["error"]["message"]
    r = client.post("/api/v1/asr", json={"language": "en-IN"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]["message"]
    r = client.post("/api/v1/turn", json={"text": "hi", "speak": "loud"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("speak:")
    r = client.post("/api/v1/turn", json={"text": "hi"}, headers={"X-API-Key": "sk_wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_the_docs_work_offline_and_can_send_the_key(client):
    assert client.get("/openapi.json").status_code == 401  # an operations route: the admin key
    spec = client.get("/openapi.json", headers={"X-Admin-Key": ADMIN}).json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "an API key made with `samvad keys create`",
    }
    assert {"ApiKey": []} in spec["paths"]["/api/v1/turn"]["post"]["security"]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert "415" in spec["paths"]["/api/v1/turn"]["post"]["responses"]
    page = client.get("/docs", headers={"X-Admin-Key": ADMIN}).text
    assert "cdn" not in page.lower() and "/static-docs/swagger-ui-bundle.js" in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert client.get(f"/static-docs/{asset}").status_code == 200, asset


def test_an_auto_session_answers_each_turn_in_the_callers_language(client, dsn):
    session = client.post("/api/v1/sessions", json={"language": "auto"}).json()
    assert session["language"] == "auto"
    one = client.post(
        "/api/v1/turn", json={"session_id": session["id"], "text": "UPI limit kitni hai per day?", "speak": False}
    )
    two = client.post(
        "/api/v1/turn", json={"session_id": session["id"], "text": "what is the stub answer", "speak": False}
    )
    assert one.status_code == two.status_code == 200, one.text + two.text
    assert (
        one.json()["transcript"]["language_code"] == "hi-IN" and one.json()["transcript"]["language_confidence"] > 0.5
    )
    assert two.json()["transcript"]["language_code"] == "en-IN"

    async def languages() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT language FROM messages WHERE session_id = $1 ORDER BY id", uuid.UUID(session["id"])
            )
            return [r["language"] for r in rows]
        finally:
            await conn.close()

    assert asyncio.run(languages()) == ["hi-IN", "hi-IN", "en-IN", "en-IN"]  # stored as detected, question and answer
    # The caller's messages keep how sure the detection was; answers were not detected.
    messages = client.get(f"/api/v1/sessions/{session['id']}/messages").json()
    sure = [(m["role"], m["language_confidence"]) for m in messages]
    assert sure[0][1] == one.json()["transcript"]["language_confidence"] and sure[2][1] > 0.5, sure
    assert sure[1][1] is None and sure[3][1] is None
    r = client.post("/api/v1/tts", json={"text": "hi", "language": "auto"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_language"


def test_a_voice_call_answers_a_typed_question(client, key):
    with client.websocket_connect("/api/v1/voice-session") as ws:
        ws.send_text(json.dumps({"type": "session.start", "api_key": key}))
        started = json.loads(ws.receive_text())
        assert started["type"] == "session.started" and started["mode"] == "modern-colloquial"
        ws.send_text(json.dumps({"type": "text.input", "text": "what is the stub answer"}))
        seen = []
        while True:
            message = ws.receive()
            if "text" in message and message["text"]:
                event = json.loads(message["text"])
                seen.append(event["type"])
                if event["type"] == "turn.done":
                    assert event["outcome"] == "complete"
                    break
        assert "response.delta" in seen


def _streaming_api(api_settings, key, fake, sarvam_key: str) -> TestClient:
    """The API with voice calls streaming each utterance to Sarvam's realtime socket (the fake);
    the stub recogniser stays the REST fallback, so a test can tell which one transcribed."""
    from rag_index.pipeline import local_runner

    providers = api_settings.providers
    sarvam = providers.sarvam.model_copy(update={"base_url": fake.url, "api_key": SecretStr(sarvam_key)})
    s = api_settings.model_copy(
        update={
            "asr": api_settings.asr.model_copy(update={"streaming": "sarvam"}),
            "providers": providers.model_copy(update={"sarvam": sarvam}),
            "pricing": api_settings.pricing | {"sarvam": load_settings().pricing["sarvam"]},
        }
    )
    db = Database(s)
    app = build_api()
    Frontend(s, db, InProcessBackend(local_runner(s), db, s)).configure(app)
    return TestClient(app, headers={"X-API-Key": key})


@pytest.fixture(scope="module")
def streaming_client(api_settings, key, fake):
    from testkit.provider_server import SARVAM_KEY

    with _streaming_api(api_settings, key, fake, SARVAM_KEY) as c:
        yield c


def _spoken_call(client, key, pcm: bytes) -> tuple[dict, list[dict]]:
    """One spoken question in a new voice call, sent in 100 ms frames: (session.started, every
    event up to turn.done)."""
    with client.websocket_connect("/api/v1/voice-session") as ws:
        ws.send_text(json.dumps({"type": "session.start", "api_key": key, "language": "en-IN"}))
        started = json.loads(ws.receive_text())
        for i in range(0, len(pcm), 3200):
            ws.send_bytes(pcm[i : i + 3200])
        seen = []
        while not seen or seen[-1]["type"] != "turn.done":
            message = ws.receive()
            if message.get("text"):
                seen.append(json.loads(message["text"]))
    return started, seen


def _question_pcm() -> bytes:
    from samvad.audio import decode_audio, float_to_pcm16
    from samvad.providers.local.espeak import EspeakTTS
    from testkit.speech import speak_wav

    s = load_settings()
    wav = speak_wav(
        EspeakTTS(s.tts.espeak, s.languages),
        "I would like to know how to block my lost debit card",
        lead_silence=0.3,
        tail_silence=1.2,
    )
    return float_to_pcm16(decode_audio(wav, target_rate=16000, max_seconds=60).samples)


async def _asr_calls(dsn: str, session_id: str) -> list:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT provider, model, outcome, audio_seconds, cost FROM provider_calls "
            "WHERE session_id = $1 AND stage = 'asr'",
            uuid.UUID(session_id),
        )
    finally:
        await conn.close()


def test_a_voice_call_streams_speech_to_the_realtime_recogniser(streaming_client, key, dsn, fake):
    """With `asr.streaming: sarvam`, the caller's speech goes to the realtime socket while it is
    spoken: its word-level partials reach the caller before the end of speech, its final is the
    turn's transcript (no REST upload), and its audio is a priced cost row of the turn."""
    fake.reset()
    started, seen = _spoken_call(streaming_client, key, _question_pcm())
    end = next(i for i, e in enumerate(seen) if e["type"] == "vad.speech_end")
    partials = [e["transcript"]["text"] for e in seen[:end] if e["type"] == "transcript" and not e["final"]]
    words = fake.state.transcript.split()
    assert len(partials) >= 3 and all(p == " ".join(words[: len(p.split())]) for p in partials), partials
    final = next(e for e in seen if e["type"] == "transcript" and e["final"])
    assert final["transcript"]["text"] == fake.state.transcript and seen[-1]["outcome"] == "complete"
    assert fake.state.calls["/speech-to-text-realtime/ws"] == 1 and fake.state.calls["/speech-to-text"] == 0

    (row,) = asyncio.run(_asr_calls(dsn, started["session_id"]))
    assert (row["provider"], row["model"]) == ("sarvam", "saaras:v3-realtime")
    assert 1.5 < row["audio_seconds"] < 6 and row["cost"] > 0


def test_a_failing_realtime_socket_hands_the_utterance_to_the_rest_recogniser(api_settings, key, fake, dsn):
    """The realtime socket refuses the call (a wrong key: close 1003): the utterance is
    transcribed by the ASR stage instead (here the stub), the caller still gets an answer, and
    the refused key opens the realtime circuit at once (later calls do not try the socket)."""
    from samvad.providers import registry

    fake.reset()
    with _streaming_api(api_settings, key, fake, "a-wrong-key") as client:
        try:
            started, seen = _spoken_call(client, key, _question_pcm())
            final = next(e for e in seen if e["type"] == "transcript" and e["final"])
            assert final["transcript"]["text"] == "what is the stub answer" and seen[-1]["outcome"] == "complete"
            # The failed socket's call is on the turn's record too, next to the recogniser that served.
            rows = asyncio.run(_asr_calls(dsn, started["session_id"]))
            assert sorted((r["provider"], r["outcome"]) for r in rows) == [("sarvam", "error"), ("stub", "ok")], rows
            assert registry._breakers["asr_realtime"]["sarvam"].state == "open"
            _, again = _spoken_call(client, key, _question_pcm())
            assert again[-1]["outcome"] == "complete" and fake.state.calls["/speech-to-text-realtime/ws"] == 1
        finally:
            registry._breakers["asr_realtime"]["sarvam"].success()


def test_an_unknown_language_closes_the_call_with_a_reason_that_fits_a_close_frame(client, key):
    """The language is the client's own text: however long (and in whatever script), the close
    reason says what is wrong within the 123 bytes a close frame holds."""
    from starlette.websockets import WebSocketDisconnect

    for language in ("xx-YY", "ह" * 80):
        with client.websocket_connect("/api/v1/voice-session") as ws:
            ws.send_text(json.dumps({"type": "session.start", "api_key": key, "language": language}))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
        reason = closed.value.reason
        assert closed.value.code == 4400 and reason.startswith("unknown language") and len(reason.encode()) <= 123
        if language == "xx-YY":
            assert "use one of: " in reason and "en-IN" in reason  # what to send instead
