"""The carriers' protocols, the stream tokens and Twilio's signature, phone numbers as stored,
and the bridge's outbound audio (8 kHz, the carrier's encoding and chunk rules, a mark per
sentence, clear on barge-in, marks of a cleared answer ignored) — without a server."""

import asyncio
import base64
import json

import numpy as np
import pytest

from samvad.settings import TelephonySettings
from samvad.storage.phones import normalise_number, redact_number
from samvad.telephony import signing
from samvad.telephony.base import BadMessage, Dtmf, Media, Other, Played, Started, Stopped
from samvad.telephony.bridge import PhoneSocket
from samvad.telephony.exotel import Exotel
from samvad.telephony.plivo import Plivo
from samvad.telephony.twilio import Twilio

pytestmark = pytest.mark.unit


def test_twilio_messages():
    t = Twilio(1000)
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ1",
        "start": {
            "streamSid": "MZ1",
            "callSid": "CA1",
            "accountSid": "AC1",
            "tracks": ["inbound"],
            "customParameters": {"token": "x", "from": "+919812345678", "to": "+918000000001"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    assert t.parse(json.dumps(start)) == Started(
        "CA1", "MZ1", "+919812345678", "+918000000001", start["start"]["customParameters"]
    )
    media = {
        "event": "media",
        "streamSid": "MZ1",
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "5",
            "payload": base64.b64encode(b"\xff" * 160).decode(),
        },
    }
    assert t.parse(json.dumps(media)) == Media(b"\xff" * 160)
    assert t.parse('{"event": "mark", "streamSid": "MZ1", "mark": {"name": "t.0"}}') == Played("t.0")
    assert t.parse('{"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "5"}}') == Dtmf(
        "5"
    )
    assert t.parse('{"event": "stop", "streamSid": "MZ1", "stop": {"callSid": "CA1"}}') == Stopped("hangup")
    assert t.parse('{"event": "connected", "protocol": "Call", "version": "1.0.0"}') == Other("connected")
    assert t.media(b"\x01") == {"event": "media", "streamSid": "MZ1", "media": {"payload": "AQ=="}}
    assert t.clear() == {"event": "clear", "streamSid": "MZ1"}
    for bad in [
        "nope",
        "[]",
        '{"event": "hello"}',
        '{"event": "media", "streamSid": "MZ1", "media": {}}',
        '{"event": "media", "streamSid": "MZ1", "media": {"payload": "***"}}',
        json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": "A" * 4000}}),
    ]:
        with pytest.raises(BadMessage):
            t.parse(bad)


def test_exotel_and_plivo_messages():
    e = Exotel(1000)
    start = {
        "event": "start",
        "sequence_number": 1,
        "stream_sid": "s1",
        "start": {
            "stream_sid": "s1",
            "call_sid": "c1",
            "account_sid": "a",
            "from": "09812345678",
            "to": "08000000001",
            "custom_parameters": {},
            "media_format": {"encoding": "base64", "sample_rate": "8000"},
        },
    }
    assert e.parse(json.dumps(start)) == Started("c1", "s1", "09812345678", "08000000001", {})
    assert e.parse(
        '{"event": "stop", "sequence_number": 9, "stream_sid": "s1", "stop": {"reason": "callended"}}'
    ) == Stopped("callended")
    assert e.mark("t.1") == {"event": "mark", "stream_sid": "s1", "mark": {"name": "t.1"}}
    wide = Exotel(1000)
    start["start"]["media_format"]["sample_rate"] = "16000"  # the applet's ?sample-rate=16000
    wide.parse(json.dumps(start))
    assert wide.sample_rate == 16000
    start["start"]["media_format"]["sample_rate"] = "24000"
    with pytest.raises(BadMessage, match="8000 or 16000"):
        Exotel(1000).parse(json.dumps(start))
    p = Plivo(1000)
    assert p.parse(
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": 1,
                "start": {
                    "callId": "c",
                    "streamId": "s",
                    "accountId": "MA",
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
                },
                "extra_headers": "token=abc;from=919812345678",
            }
        )
    ).params == {"token": "abc", "from": "919812345678"}
    assert p.parse('{"event": "playedStream", "streamId": "s", "name": "t.2"}') == Played("t.2")
    assert p.parse('{"event": "clearedAudio", "streamId": "s"}') == Other("clearedAudio")
    assert p.media(b"\x00")["media"] == {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": "AA=="}
    assert p.mark("n") == {"event": "checkpoint", "streamId": "s", "name": "n"}
    assert p.clear() == {"event": "clearAudio", "streamId": "s"}


def test_stream_tokens():
    token = signing.make("s" * 32, "s", "twilio", 7, 60, now=1000)
    assert token.isalnum()  # Plivo's extraHeaders take letters and digits only
    assert signing.check("s" * 32, token, "s", "twilio", now=1030) == ("ok", 7)
    assert signing.check("s" * 32, token, "s", "twilio", now=1061) == ("expired", None)
    assert signing.check("s" * 32, token, "s", "plivo", now=1030) == ("invalid", None)  # another carrier's
    assert signing.check("s" * 32, token, "a", "twilio", now=1030) == ("invalid", None)  # not an answer token
    assert signing.check("t" * 32, token, "s", "twilio", now=1030) == ("invalid", None)  # another deployment's
    assert signing.check("s" * 32, token.replace("v1s7", "v1s8"), "s", "twilio", now=1030) == ("invalid", None)
    assert signing.check("s" * 32, None, "s", "twilio") == ("invalid", None)
    # Two minted in the same second for one route differ (each opens one stream); an answer
    # URL's token (pasted in a console) stays the same shape as before.
    assert signing.make("s" * 32, "s", "twilio", 7, 60, now=1000) != token
    assert signing.make("s" * 32, "a", "exotel", 7, 60, now=1000) == signing.make(
        "s" * 32, "a", "exotel", 7, 60, now=1000
    )
    # Bound to a call: good for that call's stream only.
    bound = signing.make("s" * 32, "s", "twilio", 7, 60, now=1000, call="CA1")
    assert signing.check("s" * 32, bound, "s", "twilio", now=1030, call="CA1") == ("ok", 7)
    assert signing.check("s" * 32, bound, "s", "twilio", now=1030, call="CA2") == ("invalid", None)
    assert signing.check("s" * 32, bound, "s", "twilio", now=1030) == ("invalid", None)
    assert signing.check("s" * 32, token, "s", "twilio", now=1030, call="CA2") == ("ok", 7)  # unbound: any call
    # One spelling per token: leading zeros (which int() would forgive) make it invalid, so a
    # token used once cannot be used again written otherwise.
    for respelt in (token.replace("v1s7x", "v1s007x"), token.replace("x1060x", "x01060x")):
        assert respelt != token and signing.check("s" * 32, respelt, "s", "twilio", now=1030) == ("invalid", None)


def test_twilio_signatures_are_what_the_official_sdk_computes():
    from twilio.request_validator import RequestValidator

    url = "https://voice.example.com/api/v1/telephony/twilio/answer?x=1&y=2"
    params = {"CallSid": "CA1234567890ABCDE", "From": "+919812345678", "To": "+918000000001", "Digits": "12"}
    official = RequestValidator("twilio-token").compute_signature(url, params)
    assert signing.twilio_signature("twilio-token", url, params) == official
    assert signing.twilio_valid("twilio-token", url, params, official)
    # Twilio may have signed the URL with the default port spelled out; the SDK accepts both.
    with_port = RequestValidator("twilio-token").compute_signature(url.replace(".com/", ".com:443/"), params)
    assert signing.twilio_valid("twilio-token", url, params, with_port)
    assert not signing.twilio_valid("twilio-token", url, params | {"Digits": "13"}, official)
    assert not signing.twilio_valid("other-token", url, params, official)
    assert not signing.twilio_valid("twilio-token", url, params, None)
    assert not signing.twilio_valid("twilio-token", url, params, "é" * 28)  # a Latin-1 header: refused, not a 500


@pytest.mark.parametrize(
    ("method", "url", "form"),
    [
        ("POST", "https://voice.example.com/api/v1/telephony/plivo/answer?token=v1a7x99xab", {"To": ["+918000000001"]}),
        ("POST", "https://voice.example.com/answer", {"From": ["919812345678"], "CallerName": ["राम Kumar"]}),
        ("POST", "https://voice.example.com/answer?token=t", {}),
        ("GET", "https://voice.example.com/answer?token=t&From=%2B9198&b=2&b=1", {}),
    ],
)
def test_plivo_signatures_are_what_the_official_sdk_checks(method, url, form):
    from plivo.utils.signature_v3 import validate_v3_signature

    sdk_form = {k: v[0] for k, v in form.items()}
    ours = signing.plivo_signature("plivo-token", method, url, form, "n0nce")
    assert validate_v3_signature(method, url, "n0nce", "plivo-token", ours, sdk_form)
    assert signing.plivo_valid("plivo-token", method, url, form, "n0nce", f"stale-one,{ours}")  # a list of them
    assert not signing.plivo_valid("plivo-token", method, url, form, "n0nce2", ours)
    assert not signing.plivo_valid("other-token", method, url, form, "n0nce", ours)
    assert not signing.plivo_valid("plivo-token", method, url + "&x=1", form, "n0nce", ours)
    if form:
        assert not signing.plivo_valid("plivo-token", method, url, form | {"To": ["+910000000000"]}, "n0nce", ours)
    assert not signing.plivo_valid("plivo-token", method, url, form, None, ours)
    assert not signing.plivo_valid("plivo-token", method, url, form, "n0nce", "é" * 44)


def test_numbers_as_stored():
    assert normalise_number("09812345678") == "+919812345678"
    assert normalise_number("919812345678") == "+919812345678"
    assert normalise_number("+91 98123-45678") == "+919812345678"
    with pytest.raises(ValueError):
        normalise_number("12")
    assert redact_number("+919812345678") == "+91******5678"
    assert redact_number(None) is None and redact_number("123") == "***"


class Line:
    """The carrier's end of the socket: what the bridge sent."""

    def __init__(self):
        self.sent = []

    async def send_text(self, text):
        self.sent.append(json.loads(text))


def _audio(turn, index, seconds, rate=22050):
    pcm = (np.sin(np.arange(int(seconds * rate)) / 10) * 3000).astype(np.int16).tobytes()
    return json.dumps(
        {
            "type": "audio",
            "turn_id": turn,
            "index": index,
            "seq": 0,
            "sample_rate": rate,
            "encoding": "pcm16",
            "audio": base64.b64encode(pcm).decode(),
        }
    )


def test_the_bridge_sends_exotel_chunks_marks_and_clear():
    async def run():
        line, carrier = Line(), Exotel(1000)
        carrier.stream_id = "s1"
        phone = PhoneSocket(line, carrier, TelephonySettings(), 10_000)
        await phone.send_text(_audio("t", 0, 0.33))
        await phone.send_text(_audio("t", 1, 0.05))
        await phone.send_text(json.dumps({"type": "turn.done", "turn_id": "t"}))
        return line.sent, phone

    sent, phone = asyncio.run(run())
    media = [base64.b64decode(m["media"]["payload"]) for m in sent if m["event"] == "media"]
    assert all(len(c) % 320 == 0 and len(c) >= 3200 for c in media)  # Exotel's chunk rules
    assert [m["event"] for m in sent][-1] == "mark" and [m["mark"]["name"] for m in sent if m["event"] == "mark"] == [
        "t.0",
        "t.1",
    ]
    # 8 kHz PCM16; each sentence's end padded with silence to a whole chunk (3,200 bytes: 200 ms)
    assert 0.33 + 0.05 <= phone.audio_sent_s < 0.33 + 0.05 + 2 * 0.2


def test_the_bridge_clears_on_barge_in_and_ignores_the_cleared_marks():
    async def run():
        line, carrier = Line(), Twilio(1000)
        carrier.stream_id = "MZ"
        phone = PhoneSocket(line, carrier, TelephonySettings(), 10_000)
        await phone.send_text(_audio("t", 0, 0.2, rate=16000))
        await phone.send_text(_audio("t", 1, 0.2, rate=16000))
        phone.played.setdefault("t", set()).add(0)
        await phone.send_text(
            json.dumps({"type": "response.cancelled", "turn_id": "t", "reason": "barge_in", "heard_text": ""})
        )
        return line.sent, phone

    sent, phone = asyncio.run(run())
    assert sent[-1] == {"event": "clear", "streamSid": "MZ"}
    events = [m["event"] if m["event"] != "mark" else m["mark"]["name"] for m in sent]
    assert events.count("t.0") == 1 and "t.1" not in events  # the cut sentence has no mark
    ulaw = [base64.b64decode(m["media"]["payload"]) for m in sent if m["event"] == "media"]
    assert 0.3 * 8000 <= sum(map(len, ulaw)) <= 0.4 * 8000  # 8 kHz μ-law, one byte a sample
    assert "t" in phone._cancelled and phone.heard("t") == {0}


def test_a_greeting_is_played_with_its_mark_and_cleared_by_the_first_answer():
    from samvad.providers.base import AudioChunk

    async def speech(seconds):
        for _ in range(int(seconds * 10)):
            yield AudioChunk(pcm16=b"\x10\x00" * 1600, sample_rate=16000)

    async def run():
        line, carrier = Line(), Plivo(1000)
        carrier.stream_id = "s"
        phone = PhoneSocket(line, carrier, TelephonySettings(), 10_000)
        await phone.greet(speech(0.5))
        greeted = list(line.sent)
        await phone.send_text(_audio("t", 0, 0.2, rate=16000))  # the first answer, the greeting still playing
        return greeted, line.sent[len(greeted) :], phone

    greeted, after, phone = asyncio.run(run())
    assert [m["event"] for m in greeted][-1] == "checkpoint" and greeted[-1]["name"] == "greeting.0"
    assert sum(len(base64.b64decode(m["media"]["payload"])) for m in greeted if m["event"] == "playAudio") == 4000
    assert after[0] == {"event": "clearAudio", "streamId": "s"} and not phone.greeting_playing


def test_the_last_marks_before_the_line_dropped_are_read_at_the_end():
    """The server may end the call as the carrier's disconnect arrives, before the call read the
    marks queued ahead of it: `drain` reads them (and stops at once when nothing is queued)."""

    class Queued(Line):
        def __init__(self, messages):
            super().__init__()
            self.inbox = asyncio.Queue()
            for m in messages:
                self.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(m)})

        async def receive(self):
            return await self.inbox.get()

    async def run(messages):
        carrier = Twilio(1000)
        carrier.stream_id = "MZ"
        phone = PhoneSocket(Queued(messages), carrier, TelephonySettings(), 10_000)
        await phone.send_text(_audio("t", 0, 0.2, rate=16000))  # the sentence whose mark is echoed
        await phone.send_text(json.dumps({"type": "turn.done", "turn_id": "t"}))
        await asyncio.wait_for(phone.drain(), 1)
        return phone

    mark = {"event": "mark", "sequenceNumber": "7", "streamSid": "MZ", "mark": {"name": "t.0"}}
    stop = {"event": "stop", "sequenceNumber": "8", "streamSid": "MZ", "stop": {"accountSid": "AC", "callSid": "CA"}}
    phone = asyncio.run(run([mark, stop]))
    assert phone.heard("t") == {0} and phone.end_reason == "hangup"
    assert asyncio.run(run([])).heard("t") == set()  # nothing queued: back within its short wait


def test_only_echoes_of_marks_sent_count_and_a_flood_of_carrier_messages_ends_the_call():
    """A stream token holder (or a broken carrier) echoing marks never sent, malformed ones
    ("t.²" is a digit to str.isdigit, not to int) or one echo twice: none is recorded as heard,
    none ends the call; and every carrier message counts against the socket's rate."""
    from samvad.call_budget import CallBudget, OverBudget
    from samvad.settings import VoiceSettings

    class Queued(Line):
        def __init__(self):
            super().__init__()
            self.inbox = asyncio.Queue()

        def put(self, m):
            self.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(m)})

        async def receive(self):
            return await self.inbox.get()

    def mark(name):
        return {"event": "mark", "sequenceNumber": "1", "streamSid": "MZ", "mark": {"name": name}}

    async def run():
        line, carrier = Queued(), Twilio(1000)
        carrier.stream_id = "MZ"
        phone = PhoneSocket(
            line, carrier, TelephonySettings(), 10_000, CallBudget(VoiceSettings(max_messages_per_s=50))
        )
        await phone.send_text(_audio("t", 0, 0.2, rate=16000))
        await phone.send_text(json.dumps({"type": "turn.done", "turn_id": "t"}))
        for name in ("t.²", "t.abc", "t.7", "other.0", "t.0", "t.0", "x" * 300):
            line.put(mark(name))
        await asyncio.wait_for(phone.drain(), 1)
        heard = {turn: set(indexes) for turn, indexes in phone.played.items()}
        for _ in range(60):
            line.put({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        with pytest.raises(OverBudget):
            await asyncio.wait_for(phone.receive(), 1)
        return heard, phone

    heard, phone = asyncio.run(run())
    assert heard == {"t": {0}} and phone.end_reason is None
