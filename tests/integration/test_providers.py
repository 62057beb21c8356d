"""Samvad's own provider clients against the contract-faithful fake server: requests, streams,
retries, errors, splitting of long input, failover with circuit breakers, caching."""

import asyncio

import numpy as np
import pytest
from pydantic import SecretStr

from samvad.audio import Audio
from samvad.contracts import ChatMessage
from samvad.errors import InputError, ProviderError
from samvad.providers import registry
from samvad.providers.base import ChatRequest, SpeechRequest, TranslationRequest
from samvad.providers.elevenlabs.config import ElevenLabsSettings, ElevenVoiceSettings
from samvad.providers.elevenlabs.tts import ElevenLabsTTS
from samvad.providers.openai_compat.config import OpenAISettings
from samvad.providers.openai_compat.llm import OpenAICompatChat
from samvad.providers.sarvam.asr import SarvamSTT
from samvad.providers.sarvam.config import SarvamSettings
from samvad.providers.sarvam.language_id import SarvamLanguageId
from samvad.providers.sarvam.llm import SarvamChat
from samvad.providers.sarvam.translate import SarvamTranslator
from samvad.providers.sarvam.tts import SarvamTTS
from samvad.settings import load_settings
from testkit.provider_server import ELEVEN_KEY, OPENAI_KEY, SARVAM_KEY

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean(fake):
    fake.reset()
    registry._breakers.clear()


def sarvam_settings(fake, **kw) -> SarvamSettings:
    return SarvamSettings(base_url=fake.url, api_key=SARVAM_KEY, max_retry_wait_s=2, **kw)


async def collect(stream):
    return [x async for x in stream]


async def test_sarvam_tts_streams_pcm_and_records_usage(fake):
    calls = []
    chunks = await collect(
        SarvamTTS(sarvam_settings(fake)).stream(SpeechRequest(text="Namaste.", language="hi-IN"), calls)
    )
    pcm = b"".join(c.pcm16 for c in chunks)
    assert len(pcm) > 1000 and chunks[0].sample_rate == 22050
    assert calls[0].provider == "sarvam" and calls[0].usage.characters == len("Namaste.") and calls[0].retries == 0


async def test_sarvam_tts_splits_long_text_and_validates_speaker(fake):
    text = "This sentence is about forty characters. " * 100  # 4100 chars > 3500 stream limit
    await collect(SarvamTTS(sarvam_settings(fake)).stream(SpeechRequest(text=text, language="en-IN"), []))
    assert fake.state.calls["/text-to-speech/stream"] == 2
    with pytest.raises(InputError):
        SarvamTTS(sarvam_settings(fake, tts_speaker="anushka"))  # a v2 voice on bulbul:v3
    with pytest.raises(InputError):
        await collect(SarvamTTS(sarvam_settings(fake)).stream(SpeechRequest(text="x", language="as-IN"), []))


async def test_sarvam_stt_splits_audio_over_30_seconds(fake):
    rate = 16000
    t = np.arange(45 * rate) / rate
    audio = Audio((0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate)
    calls = []
    transcript = await SarvamSTT(sarvam_settings(fake)).transcribe(audio, None, calls)
    assert fake.state.calls["/speech-to-text"] == 2
    assert transcript.text == f"{fake.state.transcript} {fake.state.transcript}"
    assert transcript.language_code == "en-IN" and len(transcript.raw_segments) == 2
    assert calls[0].usage.audio_seconds == pytest.approx(45.0)


async def test_sarvam_translate_modes_and_splitting(fake):
    tr = SarvamTranslator(sarvam_settings(fake))
    calls = []
    r = await tr.translate(
        TranslationRequest(
            text="Your EMI is pending.",
            source_language="en-IN",
            target_language="hi-IN",
            mode="code-mixed",
            output_script="roman",
        ),
        calls,
    )
    assert r.text.startswith("[hi-IN|code-mixed|roman]") and r.language_code == "hi-IN"
    long = "A short sentence here. " * 60  # 1380 chars > mayura's 1000
    await tr.translate(TranslationRequest(text=long, source_language="en-IN", target_language="ta-IN"), calls)
    assert fake.state.calls["/translate"] == 3
    st = SarvamTranslator(sarvam_settings(fake, translate_model="sarvam-translate:v1"))
    r = await st.translate(
        TranslationRequest(text="Hi.", source_language="en-IN", target_language="as-IN", mode="code-mixed"), []
    )
    assert "mode_unavailable:code-mixed" in r.flags and "|formal" in r.text


async def test_sarvam_and_openai_chat_stream(fake):
    req = ChatRequest(messages=[ChatMessage(role="user", content="How do I block my card?")])
    calls = []
    text = "".join(await collect(SarvamChat(sarvam_settings(fake), "be brief").stream(req, calls)))
    assert text.strip() == fake.state.answer and calls[0].model == "sarvam-105b"
    calls = []
    oa = OpenAICompatChat(OpenAISettings(base_url=f"{fake.url}/openai/v1", api_key=OPENAI_KEY), "be brief")
    text = "".join(await collect(oa.stream(req, calls)))
    assert text.strip() == fake.state.answer
    assert calls[0].usage.output_tokens == len(fake.state.answer.split())  # from the include_usage chunk


async def test_sarvam_reasoning_is_counted_never_spoken(fake):
    from samvad.providers.sarvam.llm import SarvamChat

    req = ChatRequest(messages=[ChatMessage(role="user", content="How do I block my card?")])
    calls = []
    text = "".join(await collect(SarvamChat(sarvam_settings(fake), "be brief").stream(req, calls)))
    assert text.strip() == fake.state.answer  # the reasoning_content deltas are not in the answer
    usage = calls[0].usage
    # v1's stream reports no usage: estimated from the text, reasoning included, and said so.
    assert usage.estimated and usage.reasoning_tokens > 0 and usage.output_tokens > usage.reasoning_tokens
    assert usage.input_tokens > 0 and not calls[0].truncated


async def test_an_answer_cut_at_the_token_limit_ends_on_a_whole_sentence(fake, settings):
    """finish_reason "length": the turn speaks up to the last complete sentence and is flagged."""
    from rag_index.pipeline import local_runner
    from samvad.providers.sarvam.llm import SarvamChat
    from samvad.turn import Engines, TurnRequest, TurnRunner

    reasoning_words = 15  # the fake's reasoning, one token a word; the limit leaves ~8 words of answer
    chat = SarvamChat(sarvam_settings(fake, max_tokens=reasoning_words + 8), "be brief")
    local = local_runner(settings)
    runner = TurnRunner(
        Engines(
            stt=local.engines.stt,
            retriever=local.engines.retriever,
            llm=chat,
            translator=local.engines.translator,
            tts=local.engines.tts,
        ),
        settings,
    )
    done = None
    async for event in runner.run(TurnRequest(turn_id="t1", text="How do I block my card?", speak=False)):
        if event.type == "turn.done":
            done = event
    spoken = done.response.response_text
    assert "answer_truncated" in done.flags and [c.truncated for c in done.calls if c.stage == "llm"] == [True]
    assert spoken == "Block your card in the app.", spoken  # not "... You can also call the"


async def test_sarvam_chat_models_are_the_v1_endpoints_own(fake):
    import httpx
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SarvamSettings(chat_model="sarvam-m")  # retired: refused in the config, not at the first call
    r = httpx.post(
        f"{fake.url}/v1/chat/completions",
        headers={"api-subscription-key": SARVAM_KEY},
        json={"model": "sarvam-30b", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 400 and "sarvam-105b-conversations" in r.json()["error"]["message"]
    from samvad.providers.sarvam.llm import SarvamChat

    req = ChatRequest(messages=[ChatMessage(role="user", content="hi")])
    calls = []
    voice = SarvamChat(sarvam_settings(fake, chat_model="sarvam-105b-conversations"), "be brief")
    assert "".join(await collect(voice.stream(req, calls))).strip() == fake.state.answer
    assert calls[0].model == "sarvam-105b-conversations"


async def test_elevenlabs_speaks_only_its_models_languages_and_failover_skips_it(fake):
    """The default flash model speaks English, Hindi and Tamil of ours: a Bengali caller is passed
    to the next TTS in the chain instead of being spoken to in the wrong language; eleven_v3 speaks
    Bengali; Odia goes out as ISO `or` where a model has it."""
    from samvad.providers.breaker import CircuitBreaker
    from samvad.providers.elevenlabs.tts import iso
    from samvad.providers.fallback import FallbackTTS

    flash = ElevenLabsTTS(ElevenLabsSettings(base_url=fake.url, api_key=ELEVEN_KEY))
    assert "hi-IN" in flash.capabilities.languages and "ta-IN" in flash.capabilities.languages
    assert not [lang for lang in ("bn-IN", "te-IN", "od-IN", "mr-IN") if lang in flash.capabilities.languages]
    with pytest.raises(InputError):
        await collect(flash.stream(SpeechRequest(text="Namaskar.", language="bn-IN"), []))
    v3 = ElevenLabsTTS(ElevenLabsSettings(base_url=fake.url, api_key=ELEVEN_KEY, model_id="eleven_v3"))
    fake.reset()
    await collect(v3.stream(SpeechRequest(text="Namaskar.", language="bn-IN"), []))
    assert fake.state.eleven_bodies[-1]["language_code"] == "bn" and iso("od-IN") == "or"
    from samvad.providers.local.espeak import EspeakTTS
    from samvad.settings import load_settings

    s = load_settings()
    espeak = EspeakTTS(s.tts.espeak, s.languages)
    chain = FallbackTTS("tts", [flash, espeak], {p.name: CircuitBreaker() for p in (flash, espeak)})
    calls = []
    chunks = await collect(chain.stream(SpeechRequest(text="Namaskar.", language="bn-IN"), calls))
    assert chunks and [c.provider for c in calls] == ["espeak"]  # ElevenLabs was not even called


async def test_elevenlabs_voice_settings_and_previous_text(fake):

    tts = ElevenLabsTTS(
        ElevenLabsSettings(
            base_url=fake.url, api_key=ELEVEN_KEY, voice_settings=ElevenVoiceSettings(stability=0.4, speed=1.1)
        )
    )
    fake.reset()
    await collect(
        tts.stream(SpeechRequest(text="Then call us.", language="en-IN", previous_text="Block it in the app."), [])
    )
    body = fake.state.eleven_bodies[-1]
    assert (
        body["voice_settings"] == {"stability": 0.4, "speed": 1.1} and body["previous_text"] == "Block it in the app."
    )
    with pytest.raises(ValueError):
        ElevenVoiceSettings(speed=2.0)  # outside what the API accepts: refused in the config


async def test_elevenlabs_tts_streams_pcm(fake):
    tts = ElevenLabsTTS(ElevenLabsSettings(base_url=fake.url, api_key=ELEVEN_KEY))
    chunks = await collect(tts.stream(SpeechRequest(text="Hello.", language="en-IN"), []))
    assert sum(len(c.pcm16) for c in chunks) > 1000 and chunks[0].sample_rate == 22050


async def test_429_then_200_succeeds_with_one_retry(fake):
    fake.fault(path="/translate", status=429, times=1, retry_after="1")
    calls = []
    started = asyncio.get_running_loop().time()
    await SarvamTranslator(sarvam_settings(fake)).translate(
        TranslationRequest(text="Hi.", source_language="en-IN", target_language="hi-IN"), calls
    )
    assert calls[0].outcome == "ok" and calls[0].retries == 1
    assert asyncio.get_running_loop().time() - started >= 0.9  # retry-after honoured
    fake.fault(path="/openai", status=503, times=1, retry_after_ms="50")
    calls = []
    oa = OpenAICompatChat(OpenAISettings(base_url=f"{fake.url}/openai/v1", api_key=OPENAI_KEY), "x")
    await collect(oa.stream(ChatRequest(messages=[ChatMessage(role="user", content="hi")]), calls))
    assert calls[0].retries == 1


async def test_no_retry_on_bad_key_or_exhausted_quota(fake):
    calls = []
    with pytest.raises(ProviderError) as err:
        await SarvamTranslator(SarvamSettings(base_url=fake.url, api_key="wrong")).translate(
            TranslationRequest(text="Hi.", source_language="en-IN", target_language="hi-IN"), calls
        )
    assert err.value.provider_status == 403 and not err.value.retryable and calls[0].retries == 0
    assert "wrong" not in str(err.value)  # the key never travels in errors
    fake.fault(path="/translate", status=429, times=5, code="insufficient_quota_error")
    with pytest.raises(ProviderError) as err:
        await SarvamTranslator(sarvam_settings(fake)).translate(
            TranslationRequest(text="Hi.", source_language="en-IN", target_language="hi-IN"), []
        )
    assert err.value.code == "insufficient_quota_error" and fake.state.calls["/translate"] == 2


async def test_stream_dropped_midway_is_a_provider_error(fake):
    fake.fault(path="/text-to-speech/stream", drop_after_bytes=4096, status=0, times=1)
    calls = []
    with pytest.raises(ProviderError):
        await collect(
            SarvamTTS(sarvam_settings(fake)).stream(SpeechRequest(text="Hello there. " * 20, language="en-IN"), calls)
        )
    assert calls[0].outcome == "error"


def _settings(fake, tts: list[str], **extra):
    s = load_settings()
    p = s.providers.model_copy(
        update={
            "sarvam": sarvam_settings(fake),
            "elevenlabs": ElevenLabsSettings(base_url=fake.url, api_key=ELEVEN_KEY, max_retries=0),
            "breaker_failures": 2,
            "breaker_cooldown_s": 60,
        }
    )
    return s.model_copy(update={"providers": p, "tts": s.tts.model_copy(update={"providers": tts}), **extra})


async def test_failover_to_next_tts_and_circuit_opens(fake):
    s = _settings(fake, ["sarvam", "elevenlabs", "espeak"])
    s.providers.sarvam.max_retries = 0
    chain = registry.build_tts(s)
    fake.fault(path="/text-to-speech/stream", status=503, times=100)
    for _ in range(3):
        calls = []
        chunks = await collect(chain.stream(SpeechRequest(text="Hello.", language="en-IN"), calls))
        assert chunks and [c.provider for c in calls if c.outcome == "ok"] == ["elevenlabs"]
    # Two failures opened sarvam's circuit: the third request did not even try it.
    assert fake.state.calls["/text-to-speech/stream"] == 2
    assert registry.breakers("tts", s)["sarvam"].state == "open"


async def test_bad_key_opens_the_circuit_at_once(fake):
    s = _settings(fake, ["sarvam", "espeak"])
    s.providers.sarvam.api_key = SecretStr("wrong")
    chain = registry.build_tts(s)
    calls = []
    await collect(chain.stream(SpeechRequest(text="Hello.", language="en-IN"), calls))
    assert [c.provider for c in calls] == ["sarvam", "espeak"]
    assert registry.breakers("tts", s)["sarvam"].state == "open"


async def test_turn_records_failover_and_all_down_gives_an_error_event(fake, runner):
    from samvad.turn import Engines, TurnRequest, TurnRunner

    s = _settings(fake, ["sarvam", "elevenlabs"])
    e = runner.engines
    fake.fault(path="/text-to-speech/stream", status=503, times=100)
    turn = TurnRunner(Engines(e.stt, e.retriever, e.llm, e.translator, registry.build_tts(s)), runner.settings)
    events = [ev async for ev in turn.run(TurnRequest(turn_id="t", text="How do I block my debit card?"))]
    done = events[-1]
    assert done.outcome == "complete" and "failover:tts:sarvam->elevenlabs" in done.flags
    assert any(c.provider == "elevenlabs" and c.stage == "tts" for c in done.calls)
    fake.fault(path="/v1/text-to-speech", status=503, times=100)
    registry._breakers.clear()
    turn = TurnRunner(Engines(e.stt, e.retriever, e.llm, e.translator, registry.build_tts(s)), runner.settings)
    events = [ev async for ev in turn.run(TurnRequest(turn_id="t2", text="How do I block my debit card?"))]
    assert [ev.type for ev in events][-2:] == ["error", "turn.done"]
    assert events[-2].code in {"http_503", "system_busy", "providers_unavailable"} and events[-1].outcome == "failed"


def test_every_provider_down_still_persists_the_user_message(fake, runner, tmp_path):
    from actors.conversation import Conversation
    from samvad.storage.repository import Repository
    from samvad.turn import Engines, TurnRequest, TurnRunner
    from tests.servers import postgres

    s = _settings(fake, ["sarvam", "elevenlabs"])
    fake.fault(path="/text-to-speech/stream", status=503, times=100)
    fake.fault(path="/v1/text-to-speech", status=503, times=100)
    e = runner.engines

    async def scenario(dsn):
        repo = await Repository.connect(dsn, "k")
        try:
            session = await repo.create_session("en-IN", "formal", None)
            turn = TurnRunner(Engines(e.stt, e.retriever, e.llm, e.translator, registry.build_tts(s)), runner.settings)
            conv = Conversation(session.id, await _own(repo, session.id), turn, repo)
            events = [ev async for ev in conv.turn(TurnRequest(turn_id="t1", text="How do I block my card?"))]
            assert events[-2].type == "error" and events[-1].outcome == "failed"
            msgs = await repo.messages(session.id)
            assert [(m.role, m.status) for m in msgs] == [("user", "complete"), ("assistant", "failed")]
            assert msgs[0].content == "How do I block my card?"
            calls = await repo.provider_calls(session.id)
            assert {c["provider"] for c in calls if c["stage"] == "tts"} == {"sarvam", "elevenlabs"}
            assert all(c["outcome"] == "error" for c in calls if c["stage"] == "tts")
        finally:
            await repo.close()

    with postgres(tmp_path) as dsn:
        asyncio.run(scenario(dsn))


async def test_translation_and_tts_are_cached_per_provider(fake, tmp_path):
    from samvad.storage.cache import Cache
    from tests.servers import redis_url

    with redis_url(tmp_path) as url:
        import redis as _redis

        _redis.Redis.from_url(url).flushdb()
        cache = Cache(url, {"tts": 60, "translation": 60})
        s = _settings(fake, ["sarvam"])
        s = s.model_copy(update={"translation": s.translation.model_copy(update={"providers": ["sarvam"]})})
        tr = registry.build_translator(s, cache)
        req = TranslationRequest(text="Your card is blocked.", source_language="en-IN", target_language="ta-IN")
        first, second = [], []
        a = await tr.translate(req, first)
        b = await tr.translate(req, second)
        assert a == b and fake.state.calls["/translate"] == 1
        assert not first[0].cache_hit and second[0].cache_hit
        tts = registry.build_tts(s, cache)
        sreq = SpeechRequest(text="Your card is blocked.", language="ta-IN")
        one = b"".join(c.pcm16 for c in await collect(tts.stream(sreq, [])))
        hit_calls = []
        two = b"".join(c.pcm16 for c in await collect(tts.stream(sreq, hit_calls)))
        assert one == two and fake.state.calls["/text-to-speech/stream"] == 1 and hit_calls[0].cache_hit
        await cache.close()


async def test_sarvam_streaming_stt_over_the_socket(fake):
    from samvad.providers.sarvam.asr_stream import SarvamStreamingSTT

    rate = 16000
    t = np.arange(2 * rate) / rate
    audio = Audio((0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate)
    calls = []
    transcript = await SarvamStreamingSTT(sarvam_settings(fake)).transcribe(audio, "ta-IN", calls)
    assert transcript.text == fake.state.transcript and transcript.language_code == "ta-IN"
    assert transcript.raw_segments[0].end == pytest.approx(2.0, abs=0.01)
    assert calls[0].usage.audio_seconds == pytest.approx(2.0)
    with pytest.raises(ProviderError) as err:
        await SarvamStreamingSTT(SarvamSettings(base_url=fake.url, api_key="wrong")).transcribe(audio, "ta-IN", [])
    assert err.value.provider_status == 401 and not err.value.retryable


async def test_sarvam_streaming_stt_joins_every_segment_of_an_utterance(fake):
    """The service finalises one transcript per segment (a pause splits them) and flushes only a
    socket opened with flush_signal=true: every segment is read and joined, none is lost."""
    from samvad.providers.sarvam.asr_stream import SarvamStreamingSTT

    rate = 16000
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate)).astype(np.float32)
    pause = np.zeros(rate, dtype=np.float32)  # 1 s: two segments, then three
    stt = SarvamStreamingSTT(sarvam_settings(fake))
    two = await stt.transcribe(Audio(np.concatenate([tone, pause, tone]), rate), "hi-IN", [])
    assert two.text == fake.state.transcript and len(two.raw_segments) == 2
    three = await stt.transcribe(Audio(np.concatenate([tone, pause, tone, pause, tone]), rate), "hi-IN", [])
    assert three.text == fake.state.transcript and len(three.raw_segments) == 3
    assert [s.start for s in three.raw_segments] == sorted(s.start for s in three.raw_segments)
    silence = await stt.transcribe(Audio(np.zeros(rate, dtype=np.float32), rate), "hi-IN", [])
    assert silence.text == "" and silence.raw_segments == []


async def _stream_utterance(stt, language, seconds: float = 2.0, calls=None):
    """Streams `seconds` of speech in 100 ms frames, paced like a caller; returns (partials, final)."""
    partials = []

    async def on_partial(t):
        partials.append(t)

    stream = stt.open(language, on_partial)
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(1600) / 16000)).astype(np.float32)
    for _ in range(int(seconds * 10)):
        stream.send(tone)
        await asyncio.sleep(0.02)
    return partials, await stream.finish(calls if calls is not None else [])


async def test_sarvam_realtime_stt_streams_partials_then_a_final(fake):
    """The realtime socket (§11): partials arrive while the caller speaks, word by word, and the
    final follows speech_end without a second upload; its audio is recorded for billing."""
    from samvad.providers.sarvam.asr_realtime import SarvamRealtimeSTT

    stt, calls = SarvamRealtimeSTT(sarvam_settings(fake)), []
    partials, final = await _stream_utterance(stt, "ta-IN", calls=calls)
    words = fake.state.transcript.split()
    assert len(partials) >= 2 and all(p.language_code == "ta-IN" for p in partials)
    assert [p.text for p in partials] == [" ".join(words[: len(p.text.split())]) for p in partials]  # prefixes
    assert len(partials[-1].text.split()) > len(partials[0].text.split())
    assert final.text == fake.state.transcript and final.language_code == "ta-IN" and final.language_confidence is None
    assert calls[0].provider == "sarvam" and calls[0].model == "saaras:v3-realtime"
    assert calls[0].usage.audio_seconds == pytest.approx(2.0) and calls[0].outcome == "ok"
    assert fake.state.calls["/speech-to-text-realtime/ws"] == 1 and fake.state.calls["/speech-to-text"] == 0


async def test_sarvam_realtime_stt_detects_the_language_and_spells_odia_its_way(fake):
    """`auto` detects per utterance (language and confidence on the final); Odia is `or-IN` on
    this socket, `od-IN` everywhere else, so a socket asked for od-IN would be closed with 4000."""
    from samvad.providers.sarvam.asr_realtime import SarvamRealtimeSTT

    stt = SarvamRealtimeSTT(sarvam_settings(fake))
    fake.state.spoken_language = "od-IN"
    try:
        partials, final = await _stream_utterance(stt, None, seconds=1.0)
        assert final.language_code == "od-IN" and final.language_confidence == pytest.approx(0.93)
        assert partials and partials[0].language_code == "od-IN"
        _, asked = await _stream_utterance(stt, "od-IN", seconds=0.5)
        assert asked.language_code == "od-IN" and asked.text == fake.state.transcript
    finally:
        fake.state.spoken_language = "en-IN"


async def test_sarvam_realtime_stt_failures_are_provider_errors(fake):
    from samvad.providers.sarvam.asr_realtime import SarvamRealtimeSTT

    bad_key, calls = SarvamRealtimeSTT(SarvamSettings(base_url=fake.url, api_key="wrong")), []
    with pytest.raises(ProviderError) as err:
        await _stream_utterance(bad_key, "hi-IN", seconds=0.3, calls=calls)
    assert "1003" in err.value.message and not err.value.retryable and calls[0].outcome == "error"
    with pytest.raises(ProviderError) as err:  # a language the socket does not take: closed with 4000
        await _stream_utterance(SarvamRealtimeSTT(sarvam_settings(fake)), "xx-IN", seconds=0.3)
    assert "4000" in err.value.message and not err.value.retryable
    fake.state.realtime_hangs = True  # a stuck service: the caller waits a bounded time, not timeout_s
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderError) as err:
        await _stream_utterance(SarvamRealtimeSTT(sarvam_settings(fake, timeout_s=60)), "hi-IN", seconds=0.3)
    assert "no final" in err.value.message and asyncio.get_running_loop().time() - started < 10


async def test_sarvam_language_identification(fake):

    lid, calls = SarvamLanguageId(sarvam_settings(fake)), []
    assert (await lid.identify("मेरा कार्ड खो गया", calls)).model_dump() == {
        "language_code": "hi-IN",
        "script_code": "Deva",
    }
    assert (await lid.identify("mera card kho gaya", calls)).model_dump() == {
        "language_code": "hi-IN",
        "script_code": "Latn",
    }
    assert (await lid.identify("x" * 5000, calls)).language_code == "en-IN"  # long input is cut to the 1000-char limit
    with pytest.raises(InputError):
        await lid.identify("   ", calls)
    # Every call is recorded and billed per character sent (at most the 1000 the endpoint takes).
    assert [(c.stage, c.provider, c.model) for c in calls[:3]] == [("language_id", "sarvam", "text-lid")] * 3
    assert [c.usage.characters for c in calls[:3]] == [17, 18, 1000]
    from samvad.cost import price
    from samvad.settings import load_settings

    assert price(calls[2], load_settings().pricing).cost == pytest.approx(0.35)


def test_hindi_code_mixed_session_end_to_end_against_the_fake(fake, runner, tmp_path, caplog):
    """Hindi audio -> Sarvam STT in translate mode (English text, language hi-IN) -> grounded answer
    -> Sarvam translation to Hindi in the session's code-mixed mode -> Sarvam Hindi TTS; the cost
    rows carry the right units; no secret shows up in logs, errors or events."""
    import logging

    from actors.conversation import Conversation
    from samvad.storage.repository import Repository
    from samvad.turn import Engines, TurnRequest, TurnRunner
    from testkit.speech import speak_wav
    from tests.servers import postgres

    caplog.set_level(logging.DEBUG)
    s = _settings(fake, ["sarvam"])
    s.providers.sarvam.stt_mode = "translate"
    s = s.model_copy(
        update={
            "asr": s.asr.model_copy(update={"providers": ["sarvam"]}),
            "translation": s.translation.model_copy(update={"providers": ["sarvam"]}),
        }
    )
    e = runner.engines
    turn = TurnRunner(
        Engines(registry.build_stt(s), e.retriever, e.llm, registry.build_translator(s), registry.build_tts(s)),
        runner.settings,
    )
    audio = speak_wav(e.tts, "मेरा डेबिट कार्ड खो गया है", "hi-IN")

    async def scenario(dsn):
        repo = await Repository.connect(dsn, "k")
        try:
            session = await repo.create_session("hi-IN", "code-mixed", None)
            conv = Conversation(session.id, await _own(repo, session.id), turn, repo)
            events = [
                ev
                async for ev in conv.turn(TurnRequest(turn_id="t1", audio=audio, language="hi-IN", mode="code-mixed"))
            ]
            return events, await repo.provider_calls(session.id), await repo.messages(session.id)
        finally:
            await repo.close()

    with postgres(tmp_path) as dsn:
        events, calls, messages = asyncio.run(scenario(dsn))
    transcript = next(ev for ev in events if ev.type == "transcript").transcript
    assert (
        transcript.language_code == "hi-IN" and transcript.text == fake.state.transcript
    )  # English, from translate mode
    deltas = [ev for ev in events if ev.type == "response.delta"]
    assert deltas and all(d.text.startswith("[hi-IN|code-mixed]") and d.language_code == "hi-IN" for d in deltas)
    assert any(ev.type == "audio" for ev in events) and events[-1].outcome == "complete"
    by_stage = {c["stage"]: c for c in calls}
    assert by_stage["asr"]["provider"] == "sarvam" and by_stage["asr"]["audio_seconds"] > 0.5
    assert float(by_stage["asr"]["cost"]) == pytest.approx(by_stage["asr"]["audio_seconds"] * 0.0083333, rel=1e-3)
    assert by_stage["translation"]["characters"] > 0 and by_stage["translation"]["currency"] == "INR"
    tts = [c for c in calls if c["stage"] == "tts"]
    assert all(c["provider"] == "sarvam" and float(c["cost"]) == pytest.approx(c["characters"] * 0.003) for c in tts)
    assert [m.role for m in messages] == ["user", "assistant"]
    # Secrets: a failing call with a wrong key leaves no key in errors, events or logs.
    secret = SARVAM_KEY
    s.providers.sarvam.api_key = SecretStr("sk-never-log-me")
    bad = TurnRunner(Engines(e.stt, e.retriever, e.llm, registry.build_translator(s), e.tts), runner.settings)

    async def failing():
        return [ev async for ev in bad.run(TurnRequest(turn_id="t2", text="How do I block my card?", language="hi-IN"))]

    registry._breakers.clear()
    failed = asyncio.run(failing())
    wire = " ".join(ev.model_dump_json() for ev in failed + events)
    for leaked in (secret, "sk-never-log-me"):
        assert leaked not in wire and leaked not in caplog.text


async def test_turn_succeeds_with_redis_down(runner):
    """Cache failures are misses: with Redis unreachable the turn still completes and is spoken."""
    from samvad.storage.cache import Cache
    from samvad.turn import Engines, TurnRequest, TurnRunner

    dead = Cache("redis://127.0.0.1:1/0", {"tts": 60})
    s = runner.settings
    e = runner.engines
    turn = TurnRunner(Engines(e.stt, e.retriever, e.llm, e.translator, registry.build_tts(s, dead)), s)
    events = [ev async for ev in turn.run(TurnRequest(turn_id="t", text="How do I block my debit card?"))]
    assert events[-1].outcome == "complete" and any(ev.type == "audio" for ev in events)
    assert dead.errors >= 2 and dead.hits == 0  # every lookup and store failed, quietly


async def _own(repo, session_id: str) -> int:
    """Take the conversation as a session host would: its epoch fences every write."""
    await repo.heartbeat("test-host", 60)
    return await repo.acquire(session_id, "test-host")


async def test_auto_language_follows_the_caller_turn_by_turn(fake, settings):
    """language "auto": each utterance is answered in the language the caller used — Hindi speech,
    then English speech (as Sarvam's STT reports them with language_code=unknown), then typed
    Hinglish — with the detection and its confidence in the transcript, and every call priced."""
    import io

    import soundfile as sf

    from rag_index.pipeline import local_runner
    from samvad.turn import Engines, TurnRequest, TurnRunner

    local = local_runner(settings)
    runner = TurnRunner(
        Engines(
            stt=SarvamSTT(sarvam_settings(fake)),
            retriever=local.engines.retriever,
            llm=local.engines.llm,
            translator=local.engines.translator,
            tts=local.engines.tts,
        ),
        settings,
    )
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)).astype(np.float32), 16000, format="WAV")

    async def turn(**kw):
        events = [e async for e in runner.run(TurnRequest(turn_id=kw.pop("tid"), language="auto", speak=False, **kw))]
        return events[-1], [e for e in events if e.type == "response.delta"]

    fake.state.spoken_language, fake.state.transcript = "hi-IN", "मेरा डेबिट कार्ड खो गया है"
    hindi, deltas = await turn(tid="h", audio=buf.getvalue())
    # Answered for a Hindi caller: the answer goes through translation into hi-IN (offline, the
    # identity translator, which says it could not).
    assert hindi.language_code == "hi-IN" and deltas and any(c.stage == "translation" for c in hindi.calls)
    assert hindi.transcript.language_code == "hi-IN" and hindi.transcript.language_confidence == pytest.approx(0.97)
    assert [(c.stage, c.provider) for c in hindi.calls][0] == ("asr", "sarvam") and hindi.calls[0].cost > 0
    fake.state.spoken_language, fake.state.transcript = "en-IN", "how do i block my debit card"
    english, _ = await turn(tid="e", audio=buf.getvalue(), fallback_language="hi-IN")
    assert english.language_code == "en-IN"
    hinglish, _ = await turn(tid="x", text="mera debit card kho gaya hai, block kaise karu?", fallback_language="en-IN")
    assert hinglish.language_code == "hi-IN" and hinglish.transcript.language_code == "hi-IN"
    # Romanised Tamil reads as English offline; with Sarvam's identifier it is Tamil, answered in
    # Latin letters, and the identification is a priced call of the turn.
    tanglish = "en debit card kaanom, epdi block panna vendum?"
    offline, _ = await turn(tid="t0", text=tanglish, fallback_language="en-IN")
    assert offline.language_code == "en-IN"
    runner.engines.language_id = SarvamLanguageId(sarvam_settings(fake))
    tamil, _ = await turn(tid="t1", text=tanglish, fallback_language="en-IN")
    assert tamil.language_code == "ta-IN" and tamil.transcript.language_code == "ta-IN"
    lid = [c for c in tamil.calls if c.stage == "language_id"]
    assert [(c.provider, c.outcome) for c in lid] == [("sarvam", "ok")] and lid[0].usage.characters == len(tanglish)
    # The identifier down: the turn keeps its offline guess, and the failed call is on record.
    fake.fault(path="/text-lid", status=500, times=10)
    down, _ = await turn(tid="t2", text=tanglish, fallback_language="en-IN")
    assert down.language_code == "en-IN" and [c.outcome for c in down.calls if c.stage == "language_id"] == ["error"]
    fake.state.spoken_language, fake.state.transcript = "en-IN", "how do i block my debit card"


async def test_the_translation_stage_serves_language_identification(fake, settings):
    """In the graph, Sessions reach the identifier through the Translation deployment (this is its
    plain class): a guess with its priced call, or None with the failed call when Sarvam fails."""
    from samvad.stages import TranslationStage

    s = settings.model_copy(
        update={
            "language_id": settings.language_id.model_copy(update={"provider": "sarvam"}),
            "providers": settings.providers.model_copy(update={"sarvam": sarvam_settings(fake)}),
        }
    )
    stage = TranslationStage(**TranslationStage.parts(s))
    guess, calls = await stage.identify("naan en card-ai block panna vendum, epdi?")
    assert guess.language_code == "ta-IN" and guess.script_code == "Latn" and [c.outcome for c in calls] == ["ok"]
    fake.fault(path="/text-lid", status=500, times=10)
    guess, calls = await stage.identify("naan en card-ai block panna vendum, epdi?")
    assert guess is None and [c.outcome for c in calls] == ["error"]
    assert (await TranslationStage(**TranslationStage.parts(settings)).identify("anything")) == (
        None,
        [],
    )  # not configured: no call


def test_a_typed_question_is_stored_in_the_language_the_identifier_found(fake, runner, tmp_path):
    """A conversation in language "auto": typed romanised Tamil is stored as ta-IN (not the
    offline guess, en-IN) with no made-up confidence, and the identification is a priced call row."""
    from actors.conversation import Conversation
    from samvad.storage.repository import Repository
    from samvad.turn import Engines, TurnRequest, TurnRunner
    from tests.servers import postgres

    e = runner.engines
    turn = TurnRunner(
        Engines(e.stt, e.retriever, e.llm, e.translator, e.tts, language_id=SarvamLanguageId(sarvam_settings(fake))),
        runner.settings,
    )
    text = "en debit card kaanom, epdi block panna vendum?"

    async def scenario(dsn):
        repo = await Repository.connect(dsn, "k")
        try:
            session = await repo.create_session("auto", "formal", None)
            conv = Conversation(session.id, await _own(repo, session.id), turn, repo)
            events = [ev async for ev in conv.turn(TurnRequest(turn_id="t1", text=text, language="auto", speak=False))]
            return events, await repo.provider_calls(session.id), await repo.messages(session.id)
        finally:
            await repo.close()

    with postgres(tmp_path) as dsn:
        events, calls, messages = asyncio.run(scenario(dsn))
    assert events[-1].outcome == "complete" and events[-1].language_code == "ta-IN"
    question = next(m for m in messages if m.role == "user")
    assert question.language == "ta-IN" and question.language_confidence is None
    lid = [c for c in calls if c["stage"] == "language_id"]
    assert len(lid) == 1 and lid[0]["provider"] == "sarvam" and lid[0]["characters"] == len(text)
    assert float(lid[0]["cost"]) == pytest.approx(len(text) * 0.00035)
