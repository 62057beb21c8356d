"""Attacks with phone credentials: a captured webhook sent again, a stream token seen on the
wire, a token for one call used for another, a Twilio stream without Twilio's signature, and a
carrier's address locked out by failures. Real PostgreSQL and Redis; the carriers' own SDKs sign."""

from __future__ import annotations

import uuid

import pytest
from starlette.websockets import WebSocketDisconnect
from twilio.request_validator import RequestValidator

from samvad.settings import secret
from samvad.telephony import signing
from testkit.phone import Carrier
from tests.integration.conftest import dsn, rurl  # noqa: F401 - the fixtures, shared
from tests.integration.test_telephony import (  # noqa: F401 - the fixtures, shared
    NUMBER,
    TWILIO_TOKEN,
    _plivo_signed,
    _signed,
    _token,
    client,
    route,
    settings,
)

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]  # call ids of this run: the replay cache outlives a run on the machine's Redis
ANSWER = "/api/v1/telephony/twilio/answer"


def _twilio_answer(client, call_sid: str):
    form = {"CallSid": call_sid, "From": "+919876543210", "To": NUMBER, "AccountSid": "AC1"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"https://voice.example.com{ANSWER}", form)
    return client.post(ANSWER, data=form, headers={"X-Twilio-Signature": signature})


def _token_in(twiml: str) -> str:
    return twiml.split('<Parameter name="token" value="', 1)[1].split('"', 1)[0]


def _stream_closed(client, token: str, call_sid: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Open a Twilio stream with `token`, starting as call `call_sid`, and key "1#": the close
    code and reason it gets, or (0, "") if it was taken as a call (the keyed turn is answered)."""
    url = "/api/v1/telephony/twilio"
    with client.websocket_connect(url, headers=_signed(url) if headers is None else headers) as ws:
        phone = Carrier("twilio", ws, call_id=call_sid)
        try:
            phone.connect({"token": token, "from": "+919876543210", "to": NUMBER}, listen=False)
            phone.dtmf("1")
            phone.dtmf("#")
            message = ws.receive()
        except WebSocketDisconnect as closed:
            return closed.code, closed.reason or ""
        if message["type"] == "websocket.close":
            return message.get("code", 1000), message.get("reason", "")
        phone.hang_up()
        return 0, ""


def test_a_replayed_twilio_webhook_mints_no_second_token(client):
    first = _twilio_answer(client, f"CAreplay1{RUN}")
    assert first.status_code == 200 and "<Stream" in first.text
    again = _twilio_answer(client, f"CAreplay1{RUN}")  # the same signed request, captured and sent again
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_answered"
    assert "v1s" not in again.text
    assert _twilio_answer(client, f"CAreplay2{RUN}").status_code == 200  # another call is answered


def test_a_replayed_plivo_answer_mints_no_second_token(client, settings, route):
    path = f"/api/v1/telephony/plivo/answer?token={_token(settings, 'plivo', route.id, ttl=3600, scope='a')}"
    form = {"From": "+919876543210", "To": NUMBER, "CallUUID": f"replayed-{RUN}"}
    assert client.post(path, data=form, headers=_plivo_signed(path, form)).status_code == 200
    again = client.post(path, data=form, headers=_plivo_signed(path, form))
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_answered"


def test_a_stream_token_opens_one_stream_of_its_own_call(client):
    token = _token_in(_twilio_answer(client, f"CAonce1{RUN}").text)
    # Bound to its call: presented by a stream that starts as another call, it opens nothing.
    code, reason = _stream_closed(client, token, f"CAsomeoneelse{RUN}")
    assert code == 4401, (code, reason)
    assert _stream_closed(client, token, f"CAonce1{RUN}") == (0, "")  # the carrier's own stream is taken
    code, reason = _stream_closed(client, token, f"CAonce1{RUN}")  # seen on the wire, used again
    assert code == 4401 and "already used" in reason, (code, reason)


def test_a_call_streams_once_however_long_after_its_webhook_is_replayed(client, settings, route):
    """Past the replay window a captured webhook mints a new token (signatures carry no time):
    the call it names already had its stream, which is recorded, so the token opens nothing."""
    call = f"CAlater{RUN}"
    assert _stream_closed(client, _token_in(_twilio_answer(client, call).text), call) == (0, "")
    later = signing.make(secret(settings.service, "phone"), "s", "twilio", route.id, 60, call=call)
    code, reason = _stream_closed(client, later, call)
    assert code == 4401 and "already opened" in reason, (code, reason)


def test_a_twilio_stream_needs_twilios_signature(client):
    token = _token_in(_twilio_answer(client, f"CAsigned1{RUN}").text)
    assert _stream_closed(client, token, f"CAsigned1{RUN}", headers={})[0] == 4401  # unsigned
    forged = {"X-Twilio-Signature": RequestValidator("not-the-token").compute_signature("wss://x/y", {})}
    assert _stream_closed(client, token, f"CAsigned1{RUN}", headers=forged)[0] == 4401
    assert _stream_closed(client, token, f"CAsigned1{RUN}") == (0, "")  # the token was not spent by the refusals


def test_phone_failures_lock_out_neither_api_clients_nor_the_carrier(client, settings):
    """A carrier's egress address carries every tenant's calls: bad phone credentials from it
    (one route's expired tokens, say) lock out neither the API's clients behind that address
    nor the carrier's next good call."""
    for i in range(settings.limits.auth_failures_per_minute + 5):
        assert _stream_closed(client, f"v1s1x9999999999x{i:032x}", f"CAbad{i}{RUN}")[0] == 4401
    r = client.get("/api/v1/sessions/x", headers={"X-API-Key": "sk_samvad_wrong"})
    assert r.status_code == 401, r.text  # a plain 401, not "too many failed attempts"
    good = f"CAgood{RUN}"
    assert _stream_closed(client, _token_in(_twilio_answer(client, good).text), good) == (0, "")


def test_a_carrier_webhook_is_a_small_form(client):
    """A webhook body is a few KB: a 1 MB one is refused before it is read or signed over."""
    r = client.post(
        ANSWER, content=b"CallSid=" + b"x" * (1 << 20), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 413, r.text


def test_answer_urls_made_before_phone_tokens_had_their_own_secret_still_answer(client, settings, route):
    """An Exotel or Plivo answer URL pasted into a carrier's console before the upgrade (signed
    under the resume secret) keeps answering; one signed under any other secret does not."""
    old = signing.make(secret(settings.service, "resume"), "a", "exotel", route.id, 3600)
    assert client.get(f"/api/v1/telephony/exotel/answer?token={old}").status_code == 200
    forged = signing.make("f" * 43, "a", "exotel", route.id, 3600)
    assert client.get(f"/api/v1/telephony/exotel/answer?token={forged}").status_code == 401
