"""A provider's own error text (its internals, sometimes an echo of the request or a key) reaches
the provider-calls table, never a client: `calls[].error` in REST and WebSocket results is the
public code and message."""

import pickle

import pytest

from samvad.contracts import LLMResponse
from samvad.errors import ProviderError
from samvad.events import TurnDoneEvent
from samvad.providers.base import SpeechRequest, TextToSpeech
from samvad.turn_result import turn_out

pytestmark = pytest.mark.unit
LEAK = "upstream 401 for Authorization: Bearer sk-live-SECRET at http://10.1.2.3:9000/v1/tts"


class _Broken(TextToSpeech):
    name = "broken"

    def __init__(self, exc: Exception) -> None:
        super().__init__("m1")
        self.exc = exc

    async def _stream_impl(self, request, rec):
        raise self.exc
        yield  # an async generator


@pytest.mark.parametrize(
    "exc",
    [RuntimeError(LEAK), ProviderError(LEAK, provider="broken", stage="tts", status=401)],
    ids=["engine", "vendor"],
)
async def test_calls_carry_the_public_error_and_keep_the_detail_for_the_table(exc):
    calls = []
    with pytest.raises(ProviderError):
        async for _ in _Broken(exc).stream(SpeechRequest(text="hello", language="en-IN"), calls):
            pass
    (call,) = calls
    assert call.outcome == "error" and call.error.startswith("provider_error: the tts stage failed")
    assert "SECRET" not in call.error and "10.1.2.3" not in call.error
    assert "SECRET" in call.error_detail  # the operator's provider-calls table keeps it
    assert pickle.loads(pickle.dumps(call)).error_detail == call.error_detail  # it crosses Ray hops
    done = TurnDoneEvent(turn_id="t", response=LLMResponse(response_text=""), language_code="en-IN", calls=calls)
    assert "SECRET" not in done.model_dump_json()  # the WebSocket event
    out = turn_out("s", "t", [done])  # the REST answer (and what an Idempotency-Key stores)
    assert "SECRET" not in out.model_dump_json() and out.calls[0].error == call.error
