"""Contract tests: the official SDKs against the fake provider server. If an SDK cannot talk to
the fake, the fake is wrong, and so would be any client tested against it."""

import io

import pytest
import soundfile as sf

from testkit.provider_server import ELEVEN_KEY, OPENAI_KEY, SARVAM_KEY, tone, wav

pytestmark = pytest.mark.integration


@pytest.fixture()
def sarvam(fake):
    from sarvamai import SarvamAI
    from sarvamai.environment import SarvamAIEnvironment

    env = SarvamAIEnvironment(base=fake.url, creative=fake.url, production=fake.url.replace("http", "ws"))
    return SarvamAI(api_subscription_key=SARVAM_KEY, environment=env)


def test_sarvam_sdk_speech_to_text(sarvam, fake):
    r = sarvam.speech_to_text.transcribe(file=("q.wav", wav(tone(2.0, 16000), 16000), "audio/wav"), model="saaras:v3")
    assert r.transcript == fake.state.transcript
    assert r.language_code == "en-IN" and r.language_probability is not None  # auto-detected
    r = sarvam.speech_to_text.transcribe(
        file=("q.wav", wav(tone(1.0, 16000), 16000), "audio/wav"), language_code="hi-IN"
    )
    assert r.language_code == "hi-IN" and r.language_probability is None


def test_sarvam_sdk_rejects_long_audio_and_bad_key(sarvam, fake):
    from sarvamai.core.api_error import ApiError

    with pytest.raises(ApiError) as err:
        sarvam.speech_to_text.transcribe(file=("q.wav", wav(tone(31.0, 16000), 16000), "audio/wav"))
    assert err.value.status_code == 400
    from sarvamai import SarvamAI
    from sarvamai.environment import SarvamAIEnvironment
    from sarvamai.errors import ForbiddenError

    bad = SarvamAI(
        api_subscription_key="wrong",
        environment=SarvamAIEnvironment(base=fake.url, creative=fake.url, production=fake.url),
    )
    with pytest.raises(ForbiddenError):
        bad.text.identify_language(input="hello")


def test_sarvam_sdk_text_to_speech_rest_and_stream(sarvam):
    import base64

    r = sarvam.text_to_speech.convert(
        text="Namaste, aapka swagat hai.", language_code="hi-IN", speaker="shubh", model="bulbul:v3"
    )
    data, rate = sf.read(io.BytesIO(base64.b64decode(r.audios[0])))
    assert rate == 22050 and len(data) > 1000
    streamed = b"".join(
        sarvam.text_to_speech.convert_stream(
            text="Hello there.",
            language_code="en-IN",
            speaker="shubh",
            model="bulbul:v3",
            output_audio_codec="linear16",
        )
    )
    assert len(streamed) > 1000 and len(streamed) % 2 == 0


def test_sarvam_sdk_translate_and_language_id(sarvam):
    r = sarvam.text.translate(
        input="Your EMI is pending.",
        source_language_code="en-IN",
        target_language_code="hi-IN",
        model="mayura:v1",
        mode="code-mixed",
        output_script="roman",
    )
    assert "hi-IN|code-mixed|roman" in r.translated_text and r.source_language_code == "en-IN"
    lid = sarvam.text.identify_language(input="मेरा कार्ड खो गया")
    assert lid.language_code == "hi-IN" and lid.script_code == "Deva"


def test_sarvam_sdk_chat_streams(sarvam, fake):
    stream = sarvam.chat.completions(messages=[{"role": "user", "content": "hi"}], model="sarvam-105b", stream=True)
    text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
    assert text.strip() == fake.state.answer
    from sarvamai.core.api_error import ApiError

    with pytest.raises(ApiError) as err:
        sarvam.chat.completions(messages=[{"role": "user", "content": "hi"}], model="sarvam-m")
    assert err.value.status_code == 400


def test_sarvam_sdk_retries_429_then_succeeds(sarvam, fake):
    fake.reset()
    fake.fault(path="/text-lid", status=429, times=1, retry_after="0")
    assert sarvam.text.identify_language(input="hello").language_code == "en-IN"
    assert fake.state.calls["/text-lid"] == 2


def test_elevenlabs_sdk_stream_and_convert(fake):
    from elevenlabs import ElevenLabs
    from elevenlabs.core.api_error import ApiError

    client = ElevenLabs(api_key=ELEVEN_KEY, base_url=fake.url)
    pcm = b"".join(
        client.text_to_speech.stream(
            voice_id="21m00Tcm4TlvDq8ikWAM",
            text="Hello there.",
            model_id="eleven_flash_v2_5",
            output_format="pcm_22050",
        )
    )
    assert len(pcm) > 1000 and len(pcm) % 2 == 0
    full = b"".join(
        client.text_to_speech.convert(voice_id="21m00Tcm4TlvDq8ikWAM", text="Hi.", output_format="pcm_16000")
    )
    assert len(full) > 100
    with pytest.raises(ApiError) as err:
        b"".join(
            ElevenLabs(api_key="bad", base_url=fake.url).text_to_speech.stream(
                voice_id="21m00Tcm4TlvDq8ikWAM", text="x"
            )
        )
    assert err.value.status_code == 401


def test_openai_sdk_streams_with_usage(fake):
    import openai

    client = openai.OpenAI(api_key=OPENAI_KEY, base_url=f"{fake.url}/openai/v1", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == fake.state.answer
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="bad", base_url=f"{fake.url}/openai/v1").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )


def test_sarvam_sdk_streaming_speech_to_text(sarvam, fake):
    import base64

    with sarvam.speech_to_text_streaming.connect(
        language_code="hi-IN", model="saaras:v3", vad_signals="true", flush_signal="true"
    ) as ws:  # a flush is ignored without it
        ws.transcribe(
            audio=base64.b64encode(wav(tone(1.0, 16000), 16000)).decode(), encoding="audio/wav", sample_rate=16000
        )
        ws.flush()
        messages = [ws.recv() for _ in range(3)]
    kinds = [m.type for m in messages]
    assert kinds == ["events", "events", "data"], kinds
    data = messages[-1].data
    assert data.transcript == fake.state.transcript and data.language_code == "hi-IN"
    assert abs(data.metrics.audio_duration - 1.0) < 0.01


def test_sarvam_sdk_realtime_speech_to_text(sarvam, fake):
    """The official client's realtime socket (§11) against the fake, as Samvad uses it: manual
    endpointing, partials while audio flows, one final after speech_end, session.end on end."""
    import base64

    from sarvamai.types import RealtimeAudioInput, RealtimeEnd, RealtimeSpeechEnd, RealtimeSpeechStart

    pcm = tone(0.1, 16000).tobytes()  # 100 ms of PCM16 (linear16)
    with sarvam.speech_to_text_realtime_streaming.connect(
        language_code="auto", endpointing="manual", encoding="linear16", sample_rate="16000"
    ) as ws:
        assert ws.recv().event == "session.begin"
        ws.send_realtime_speech_start(RealtimeSpeechStart())
        for _ in range(10):
            ws.send_realtime_audio_input(RealtimeAudioInput(audio=base64.b64encode(pcm).decode()))
        ws.send_realtime_speech_end(RealtimeSpeechEnd())
        ws.send_realtime_end(RealtimeEnd())
        messages = []
        while not messages or messages[-1].event != "session.end":
            messages.append(ws.recv())
    events = [m.event for m in messages]
    assert events.count("transcript.partial") >= 2 and events[-2:] == ["transcript.final", "session.end"], events
    final, end = messages[-2], messages[-1]
    assert final.text == fake.state.transcript and final.language == fake.state.spoken_language
    assert final.language_confidence is not None and abs(end.audio_duration_s - 1.0) < 0.01


def test_sarvam_sdk_text_to_speech_socket(sarvam):
    import base64

    with sarvam.text_to_speech_streaming.connect(model="bulbul:v3", send_completion_event="true") as ws:
        ws.configure(target_language_code="hi-IN", speaker="shubh", output_audio_codec="linear16")
        ws.convert("Namaste. Aapka card block ho gaya hai.")
        ws.flush()
        messages = []
        while not messages or messages[-1].type != "event":
            messages.append(ws.recv())
    audio = b"".join(base64.b64decode(m.data.audio) for m in messages if m.type == "audio")
    assert len(audio) > 1000 and messages[-1].data.event_type == "final"
