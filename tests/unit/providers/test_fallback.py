"""The failover chain (samvad/providers/fallback.py) with scripted providers: who is skipped
(open circuit, a language it cannot speak), when it moves on, when a failure must be raised
(a stream that already played), and the call records of every attempt."""

import pytest

from samvad.errors import ProviderError
from samvad.providers.base import AudioChunk, Capabilities, SpeechRequest, TextToSpeech
from samvad.providers.breaker import CircuitBreaker
from samvad.providers.fallback import FallbackTTS

pytestmark = pytest.mark.unit


class Scripted(TextToSpeech):
    """Speaks `chunks` chunks, failing with `fail` after `fail_after` of them (never, with None)."""

    def __init__(
        self,
        name: str,
        *,
        fail: ProviderError | None = None,
        fail_after: int = 0,
        chunks: int = 2,
        languages: frozenset[str] | None = None,
    ) -> None:
        super().__init__(model=name)
        self.name, self.fail, self.fail_after, self.chunks = name, fail, fail_after, chunks
        self.capabilities = Capabilities(languages=languages)
        self.asked = 0

    async def _stream_impl(self, request, rec):
        self.asked += 1
        for i in range(self.chunks):
            if self.fail is not None and i == self.fail_after:
                raise self.fail
            yield AudioChunk(pcm16=self.name.encode(), sample_rate=16000)


def _down(status: int = 503) -> ProviderError:
    return ProviderError("down", provider="x", stage="tts", status=status, retryable=status >= 500)


def _chain(*providers, failures_to_open: int = 2):
    breakers = {p.name: CircuitBreaker(failures_to_open, 30) for p in providers}
    return FallbackTTS("tts", list(providers), breakers), breakers


async def _speak(chain, language="hi-IN", calls=None):
    return [
        c.pcm16
        async for c in chain.stream(
            SpeechRequest(text="namaste", language=language), calls if calls is not None else []
        )
    ]


async def test_a_failure_before_any_audio_moves_on_and_every_attempt_is_recorded():
    first, second = Scripted("first", fail=_down()), Scripted("second")
    chain, _ = _chain(first, second)
    calls = []
    assert await _speak(chain, calls=calls) == [b"second", b"second"]
    assert [(c.provider, c.outcome) for c in calls] == [("first", "error"), ("second", "ok")]


async def test_the_circuit_opens_and_the_provider_is_skipped_until_the_cooldown():
    first, second = Scripted("first", fail=_down()), Scripted("second")
    chain, breakers = _chain(first, second)
    for _ in range(3):
        await _speak(chain)
    assert breakers["first"].state == "open" and first.asked == 2  # the third call did not ask it


async def test_a_refused_key_opens_the_circuit_at_once():
    first, second = Scripted("first", fail=_down(401)), Scripted("second")
    chain, breakers = _chain(first, second, failures_to_open=5)
    await _speak(chain)
    assert breakers["first"].state == "open"


async def test_a_provider_that_cannot_speak_the_language_is_never_asked():
    english, anyone = Scripted("english", languages=frozenset({"en-IN"})), Scripted("anyone")
    chain, _ = _chain(english, anyone)
    assert await _speak(chain, "ta-IN") == [b"anyone", b"anyone"] and english.asked == 0
    assert await _speak(chain, "en-IN") == [b"english", b"english"]


async def test_a_stream_that_fails_after_it_started_is_raised_not_repeated_elsewhere():
    first, second = Scripted("first", fail=_down(), fail_after=1), Scripted("second")
    chain, _ = _chain(first, second)
    heard = []
    with pytest.raises(ProviderError):
        async for chunk in chain.stream(SpeechRequest(text="namaste", language="hi-IN"), []):
            heard.append(chunk.pcm16)
    assert heard == [b"first"] and second.asked == 0  # the caller already heard the first voice


async def test_nothing_available_is_a_clear_error():
    chain, _ = _chain(Scripted("english", languages=frozenset({"en-IN"})))
    with pytest.raises(ProviderError) as err:
        await _speak(chain, "ta-IN")
    assert err.value.code == "providers_unavailable" and "ta-IN" in err.value.message
