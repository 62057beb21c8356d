"""A phone call through the real Serve graph (and its ingress in front): Twilio's media-stream
protocol from `testkit/phone.py` over a real socket, the offline engines answering a spoken
question, the carrier playing the answer and echoing its marks, then hanging up."""

import time
import uuid

import pytest
from websockets.sync.client import connect

from samvad.settings import load_settings, secret
from samvad.storage.repository import Repository
from samvad.telephony import signing
from testkit import aio
from testkit.phone import Carrier, to_8k
from tests.e2e.test_voice import pcm16k
from tests.graph import PORT

pytestmark = pytest.mark.e2e


class Socket:
    """A `websockets` client as the carrier fake drives it (Starlette's test-session names)."""

    def __init__(self, ws):
        self.ws = ws

    def send_text(self, text):
        self.ws.send(text)

    def receive_text(self):
        return self.ws.recv()

    def close(self):
        self.ws.close()


@pytest.fixture(scope="module")
def stream_token(serve_app):
    async def make():
        s = load_settings()
        repo = await Repository.connect(serve_app, secret(s.service, "key"), max_size=1)
        try:
            key, _ = await repo.create_key(f"phone-{uuid.uuid4().hex[:6]}")
            route = await repo.add_phone_route(key.id, "+918000000009", "en-IN")
            return signing.make(secret(s.service, "phone"), "s", "twilio", route.id, 600)
        finally:
            await repo.close()

    return aio.run(make)


def test_a_twilio_call_through_the_graph(stream_token, db):
    from samvad.providers.local.espeak import EspeakTTS

    s = load_settings()
    question = to_8k(pcm16k(EspeakTTS(s.tts.espeak, s.languages), "How do I block my lost debit card?"), 16000)
    with connect(f"ws://127.0.0.1:{PORT}/api/v1/telephony/twilio", max_size=None, open_timeout=60) as ws:
        phone = Carrier("twilio", Socket(ws))
        phone.connect({"token": stream_token, "from": "+919876543210", "to": "+918000000009"})
        phone.speak(question)
        phone.wait_for(lambda: phone.played, timeout=90)  # the first sentence played out
        phone.hang_up()
    assert phone.errors == []
    # The service settles the call after the line drops: wait for its end to be recorded.
    heard_turn = phone.played[0].rpartition(".")[0]  # the answer whose first sentence played
    deadline = time.monotonic() + 30
    while True:
        rows = db("SELECT session_id, ended_at FROM phone_calls WHERE call_id = $1", phone.call_id)
        messages = db(
            "SELECT turn_id, role, content, status FROM messages WHERE session_id = $1 ORDER BY id",
            rows[0]["session_id"],
        )
        answer = [m for m in messages if m["turn_id"] == heard_turn and m["role"] == "assistant"]
        if (rows[0]["ended_at"] is not None and answer) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    asked = " ".join(m["content"].lower() for m in messages if m["role"] == "user")
    assert "debit card" in asked  # (the line may have split the question into two utterances)
    # Hung up after that answer's first sentence played: at least that is stored as heard.
    assert answer and answer[0]["content"], messages
