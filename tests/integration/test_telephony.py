"""Phone calls through each carrier's media stream (samvad/telephony/), driven by a client that
speaks the carrier's published protocol (testkit/phone.py) against the API in this process, on
real PostgreSQL and Redis: a call asks a spoken question in real time and hears the whole
answer, asks again and barges in (the carrier is told to clear, and only the sentences whose
marks came back are stored as heard), then hangs up mid-answer; keypad digits make a typed
turn; bad frames and unknown events do not end a call until they exceed their budget; and the
answer webhooks and stream tokens admit only what they should."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from samvad.api.app import build_api
from samvad.api.frontend import Frontend
from samvad.contracts import Passage, Usage
from samvad.providers.base import AudioChunk, CallRecord, ChatModel, ChatRequest, SpeechRequest, TextToSpeech
from samvad.settings import REPO_ROOT, load_settings, secret
from samvad.storage.database import Database
from samvad.storage.repository import Repository
from samvad.telephony import signing
from samvad.turn import Engines, TurnRunner
from testkit.phone import Carrier, to_8k
from tests.integration.test_api import InProcessBackend, _question_pcm

pytestmark = pytest.mark.integration
TWILIO_TOKEN = "twilio-auth-token-for-tests"
PLIVO_TOKEN = "plivo-auth-token-for-tests"
NUMBER = "+918000000001"
ANSWER = ["First, open the Navtara app.", "Second, choose your card.", "Third, tap block."]
SENTENCE_S = 2.0  # of audio per spoken sentence
GREETING = "Namaste, you have reached Navtara Bank. How can I help you today?"
GREETING_S = 8.0  # long enough for a caller to talk over it


class ThreeSentences(ChatModel):
    name = "three"

    def __init__(self) -> None:
        super().__init__(model="three")

    async def _stream_impl(self, request: ChatRequest, rec: CallRecord) -> AsyncIterator[str]:
        rec.usage = Usage(input_tokens=3, output_tokens=12)
        for sentence in ANSWER:
            yield sentence + " "


class Documents:
    """The passage the answer comes from, so the output guardrails find every sentence grounded;
    the knowledge base each search asked for is kept."""

    asked: list[str | None] = []

    async def alookup(self, text, library, k, query=None, knowledge_base=None):
        self.asked.append(knowledge_base)
        return None, [Passage(chunk_id=0, source="cards/block.md", text=" ".join(ANSWER), score=0.9)]


class Hum(TextToSpeech):
    """SENTENCE_S of a quiet tone per sentence, in 100 ms chunks at 16 kHz (not speech: the VAD
    must not mistake the bot for the caller)."""

    name = "hum"

    def __init__(self) -> None:
        super().__init__(model="hum")

    async def _stream_impl(self, request: SpeechRequest, rec: CallRecord) -> AsyncIterator[AudioChunk]:
        tone = (np.sin(np.arange(1600) * 2 * np.pi * 220 / 16000) * 300).astype(np.int16).tobytes()
        for _ in range(int((GREETING_S if request.text == GREETING else SENTENCE_S) * 10)):
            yield AudioChunk(pcm16=tone, sample_rate=16000)


@pytest.fixture(scope="module")
def settings(dsn, rurl):
    s = load_settings(REPO_ROOT / "configs" / "stub.yaml", database_url=dsn, redis_url=rurl)
    return s.model_copy(
        update={
            "rag": s.rag.model_copy(update={"knowledge_bases": ["cards"]}),
            "telephony": s.telephony.model_copy(
                update={
                    "twilio_auth_token": SecretStr(TWILIO_TOKEN),
                    "plivo_auth_token": SecretStr(PLIVO_TOKEN),
                    "public_url": "https://voice.example.com",
                }
            ),
        }
    )


@pytest.fixture(scope="module")
def route(dsn, settings):
    """A key and the number routed to it."""

    async def make():
        repo = await Repository.connect(dsn, secret(settings.service, "key"))
        try:
            # It may use every knowledge base served: a number's route picks one.
            key, _ = await repo.create_key(f"phone-{uuid.uuid4().hex[:6]}", knowledge_bases=["*"])
            return await repo.add_phone_route(key.id, NUMBER, "en-IN")
        finally:
            await repo.close()

    return asyncio.run(make())


@pytest.fixture(scope="module")
def greeted(dsn, settings, route):
    """A second number of the same key, which greets its callers."""

    async def make():
        repo = await Repository.connect(dsn, secret(settings.service, "key"))
        try:
            return await repo.add_phone_route(route.api_key_id, "+918000000002", "en-IN", greeting=GREETING)
        finally:
            await repo.close()

    return asyncio.run(make())


@pytest.fixture(scope="module")
def client(settings, route):
    from rag_index.pipeline import local_runner

    base = local_runner(settings)
    e = base.engines
    runner = TurnRunner(Engines(e.stt, Documents(), ThreeSentences(), e.translator, Hum()), settings)
    db = Database(settings)
    app = build_api()
    Frontend(settings, db, InProcessBackend(runner, db, settings)).configure(app)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def question():
    return to_8k(_question_pcm(), 16000)


def _token(settings, carrier: str, route_id: int, ttl: float = 60.0, scope: str = "s") -> str:
    return signing.make(secret(settings.service, "phone"), scope, carrier, route_id, ttl)


def _signed(url: str) -> dict[str, str]:
    """The headers Twilio sends with a media stream's WebSocket request: its signature of the
    stream URL (by Twilio's own SDK); other carriers send none."""
    from twilio.request_validator import RequestValidator

    if "/telephony/twilio" not in url:
        return {}
    return {"X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(f"wss://voice.example.com{url}", {})}


def _open(client, settings, route, carrier: str):
    """The stream URL and the custom parameters the answer webhook would have given the carrier."""
    token = _token(settings, carrier, route.id)
    if carrier == "exotel":
        return f"/api/v1/telephony/exotel?token={token}", {}
    if carrier == "plivo":
        return "/api/v1/telephony/plivo", {"token": token, "from": "919876543210", "to": "918000000001"}
    return "/api/v1/telephony/twilio", {"token": token, "from": "+919876543210", "to": NUMBER}


def _db(dsn, sql: str, *args):
    async def run():
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _call_rows(dsn, call_id: str):
    call = _db(dsn, "SELECT * FROM phone_calls WHERE call_id = $1", call_id)
    assert len(call) == 1
    messages = _db(
        dsn,
        "SELECT turn_id, role, content, status FROM messages WHERE session_id = $1 ORDER BY id",
        call[0]["session_id"],
    )
    return call[0], messages


@pytest.mark.parametrize("carrier", ["twilio", "exotel", "plivo"])
def test_a_phone_call_hears_answers_barges_in_and_hangs_up(client, settings, route, dsn, question, carrier):
    url, params = _open(client, settings, route, carrier)
    with client.websocket_connect(url, headers=_signed(url)) as ws:
        phone = Carrier(carrier, ws)
        phone.connect(params)
        phone.speak(question)
        phone.wait_for(lambda: len(phone.played) >= 3)  # the whole first answer played out
        turns = {m.rpartition(".")[0] for m in phone.played}
        assert len(turns) == 1 and sorted(phone.played) == [f"{next(iter(turns))}.{i}" for i in range(3)]
        phone.speak(question)
        phone.wait_for(lambda: len(phone.played) >= 4)  # the second answer's first sentence played
        heard_at = phone.audio_s
        phone.speak(question[: int(1.2 * 16000)])  # the caller talks over the second sentence
        phone.wait_for(lambda: phone.cleared >= 1)  # the carrier was told to drop what it buffered
        assert len(phone.played) == 4
        phone.wait_for(lambda: phone.audio_s > heard_at + SENTENCE_S + 0.3)  # the third answer is being sent
        phone.hang_up()
    assert phone.errors == []  # nothing the carrier would reject
    call, messages = _call_rows(dsn, phone.call_id)
    # Wait for the hang-up to be recorded (the service finishes the call after the socket closes).
    deadline = time.monotonic() + 10
    while call["ended_at"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
        call, messages = _call_rows(dsn, phone.call_id)
    assert call["carrier"] == carrier and call["stream_id"] == phone.stream_id
    assert call["caller"] == "+91******3210" and call["called"] == NUMBER
    assert call["ended_at"] is not None and call["end_reason"] in ("hangup", "callended", "disconnected")
    spoken = [(m["status"], m["content"]) for m in messages if m["role"] == "assistant"]
    assert spoken[0] == ("complete", " ".join(ANSWER))
    assert spoken[1] == ("interrupted", ANSWER[0])  # only the sentence whose mark came back
    assert spoken[2] == ("interrupted", "")  # hung up before any of it played
    closed = _db(dsn, "SELECT closed_at FROM sessions WHERE id = $1", call["session_id"])
    assert closed[0]["closed_at"] is not None


def _keyed(client, settings, route, digits: str) -> Carrier:
    """A Twilio call to `route` that keys `digits`, hears the answer begin, and hangs up."""
    url, params = _open(client, settings, route, "twilio")
    with client.websocket_connect(url, headers=_signed(url)) as ws:
        phone = Carrier("twilio", ws)
        phone.connect(params)
        for digit in digits:
            phone.dtmf(digit)
        phone.wait_for(lambda: phone.audio_s > 0.5)
        phone.hang_up()
    return phone


def test_keypad_digits_are_a_typed_turn(client, settings, route, dsn):
    phone = _keyed(client, settings, route, "4521#")
    _, messages = _call_rows(dsn, phone.call_id)
    assert [m["content"] for m in messages if m["role"] == "user"] == ["4521"]


def test_a_numbers_calls_answer_from_its_knowledge_base(client, settings, route, dsn):
    async def make():
        repo = await Repository.connect(dsn, secret(settings.service, "key"))
        try:
            return await repo.add_phone_route(route.api_key_id, "+918000000003", "en-IN", knowledge_base="cards")
        finally:
            await repo.close()

    cards = asyncio.run(make())
    for number, kb in ((cards, "cards"), (route, None)):
        phone = _keyed(client, settings, number, "12#")
        call, _ = _call_rows(dsn, phone.call_id)
        session = _db(dsn, "SELECT knowledge_base FROM sessions WHERE id = $1", call["session_id"])
        assert session[0]["knowledge_base"] == kb and Documents.asked[-1] == kb


def test_bad_frames_and_unknown_events_are_survived_then_end_the_call(client, settings, route, dsn, question):
    url, params = _open(client, settings, route, "exotel")
    with client.websocket_connect(url, headers=_signed(url)) as ws:
        phone = Carrier("exotel", ws)
        phone.connect(params)
        ws.send_text("not json")
        ws.send_text(json.dumps({"event": "surprise", "stream_sid": phone.stream_id}))
        ws.send_text(json.dumps({"event": "media", "stream_sid": phone.stream_id, "media": {"payload": "%%%"}}))
        ws.send_bytes(b"\x00" * 320)
        phone.speak(question)
        phone.wait_for(lambda: len(phone.played) >= 1)  # still answered
        for _ in range(settings.telephony.max_bad_messages + 1):
            ws.send_text("{}")
        phone.wait_for(lambda: phone._stop.is_set(), timeout=10)  # the service closed the stream
    call, messages = _call_rows(dsn, phone.call_id)
    deadline = time.monotonic() + 10
    while call["ended_at"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
        call, messages = _call_rows(dsn, phone.call_id)
    assert call["end_reason"] == "bad_messages"
    assert [m["role"] for m in messages] == ["user", "assistant"]  # what was said is kept


@pytest.mark.parametrize(
    "carrier, token_of",
    [
        ("twilio", lambda s, r: "v1s1x1x" + "0" * 32),  # forged
        ("twilio", lambda s, r: _token(s, "twilio", r.id, ttl=-1)),  # expired
        ("plivo", lambda s, r: _token(s, "twilio", r.id)),  # another carrier's
        ("exotel", lambda s, r: _token(s, "exotel", r.id, scope="a")),  # an answer token, not a stream's
    ],
)
def test_a_stream_without_a_valid_token_is_refused(client, settings, route, carrier, token_of):
    token = token_of(settings, route)
    url = f"/api/v1/telephony/{carrier}?token={token}" if carrier == "exotel" else f"/api/v1/telephony/{carrier}"
    with client.websocket_connect(url, headers=_signed(url)) as ws:
        Carrier(carrier, ws).connect({"token": token}, listen=False)
        with pytest.raises(Exception) as closed:
            while True:
                ws.receive_text()
    assert getattr(closed.value, "code", None) == 4401


def test_twilio_answer_webhook_checks_the_signature_and_routes_by_number(client):
    from twilio.request_validator import RequestValidator  # Twilio's own signer

    twilio_signature = lambda token, url, params: RequestValidator(token).compute_signature(url, params)  # noqa: E731

    url = "https://voice.example.com/api/v1/telephony/twilio/answer"
    # A call id of this run's: each is answered once (the replay cache may outlive a run).
    form = {"CallSid": f"CA{uuid.uuid4().hex}", "From": "+919876543210", "To": NUMBER, "AccountSid": "AC1"}
    signed = {"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, form)}
    ok = client.post("/api/v1/telephony/twilio/answer", data=form, headers=signed)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/xml")
    assert '<Connect><Stream url="wss://voice.example.com/api/v1/telephony/twilio">' in ok.text
    assert '<Parameter name="token" value="v1s' in ok.text and 'name="from" value="+919876543210"' in ok.text
    forged = client.post("/api/v1/telephony/twilio/answer", data=form | {"To": "+910000000000"}, headers=signed)
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "bad_signature"
    latin1 = client.post(  # a header of any Latin-1 bytes is refused like any other bad signature
        "/api/v1/telephony/twilio/answer", data=form, headers={"X-Twilio-Signature": "é".encode("latin-1") * 28}
    )
    assert latin1.status_code == 403
    other = form | {"To": "+917000000000"}
    unrouted = client.post(
        "/api/v1/telephony/twilio/answer",
        data=other,
        headers={"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, other)},
    )
    assert unrouted.status_code == 200 and "not in service" in unrouted.text and "<Stream" not in unrouted.text


def _plivo_signed(url: str, form: dict[str, str], nonce: str = "12345678901234567890") -> dict[str, str]:
    """The headers Plivo sends with a POST to `url`, signed by Plivo's own SDK."""
    from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

    url = "https://voice.example.com" + url
    signature = get_signature_v3(PLIVO_TOKEN.encode(), construct_post_url(url, dict(form)), nonce.encode()).decode()
    return {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}


def _plivo_post(client, path: str, form: dict[str, str]):
    return client.post(path, data=form, headers=_plivo_signed(path, form))


def test_plivo_and_exotel_answer_urls_need_the_routes_token(client, settings, route):
    answer = _token(settings, "plivo", route.id, ttl=3600, scope="a")
    path = f"/api/v1/telephony/plivo/answer?token={answer}"
    xml = _plivo_post(client, path, {"From": "+919876543210", "To": NUMBER, "CallUUID": uuid.uuid4().hex})
    assert xml.status_code == 200 and 'bidirectional="true"' in xml.text
    assert (
        'contentType="audio/x-mulaw;rate=8000"' in xml.text
        and "wss://voice.example.com/api/v1/telephony/plivo" in xml.text
    )
    assert "from=919876543210" in xml.text  # extraHeaders: letters and digits only
    exotel = client.get(f"/api/v1/telephony/exotel/answer?token={_token(settings, 'exotel', route.id, scope='a')}")
    assert exotel.status_code == 200 and exotel.json()["url"].startswith(
        "wss://voice.example.com/api/v1/telephony/exotel?token=v1s"
    )
    refused = client.get(f"/api/v1/telephony/exotel/answer?token={answer}")  # Plivo's token
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
    refused = _plivo_post(client, f"/api/v1/telephony/plivo/answer?token={answer}x", {"To": NUMBER})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"  # signed, bad token


def test_plivo_answer_url_checks_plivos_signature_when_given_its_auth_token(client, settings, route):
    path = f"/api/v1/telephony/plivo/answer?token={_token(settings, 'plivo', route.id, ttl=3600, scope='a')}"
    form = {"From": "+919876543210", "To": NUMBER, "CallUUID": uuid.uuid4().hex}
    unsigned = client.post(path, data=form)  # the route's token alone no longer does
    assert unsigned.status_code == 403 and unsigned.json()["error"]["code"] == "bad_signature"
    other_url = client.post(path, data=form, headers=_plivo_signed("/api/v1/telephony/plivo/answer?token=x", form))
    assert other_url.status_code == 403
    signed = client.post(path, data=form, headers=_plivo_signed(path, form))
    forged = client.post(path, data=form | {"From": "+910000000000"}, headers=_plivo_signed(path, form))
    assert signed.status_code == 200 and forged.status_code == 403
    latin1 = _plivo_signed(path, form) | {"X-Plivo-Signature-V3": "é".encode("latin-1") * 44}
    assert client.post(path, data=form, headers=latin1).status_code == 403


def test_a_greeting_answers_the_call_and_gives_way_to_the_caller(client, settings, greeted, dsn, question):
    token = _token(settings, "twilio", greeted.id)
    with client.websocket_connect("/api/v1/telephony/twilio", headers=_signed("/api/v1/telephony/twilio")) as ws:
        phone = Carrier("twilio", ws, called=greeted.number)
        phone.connect({"token": token, "from": "+919876543210", "to": greeted.number})
        phone.wait_for(lambda: phone.audio_s >= GREETING_S - 0.5)  # the line speaks first, before any question
        phone.speak(question)  # the caller talks over it
        phone.wait_for(lambda: phone.cleared >= 1)  # the answer cleared what was left of the greeting
        phone.wait_for(lambda: len(phone.played) >= 3)
        phone.hang_up()
    assert phone.errors == []
    assert all(not m.startswith("greeting") for m in phone.played)  # never played out
    _, messages = _call_rows(dsn, phone.call_id)
    assert [(m["role"], m["status"]) for m in messages] == [("user", "complete"), ("assistant", "complete")]
