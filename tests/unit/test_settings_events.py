import pytest

from samvad.contracts import LLMResponse, Transcript
from samvad.events import AudioEvent, TranscriptEvent, TurnDoneEvent, parse_event
from samvad.settings import REPO_ROOT, load_settings

pytestmark = pytest.mark.unit


def test_env_overrides_yaml(monkeypatch):
    assert load_settings().vad.min_silence_ms == 400
    monkeypatch.setenv("SAMVAD_VAD__MIN_SILENCE_MS", "250")
    monkeypatch.setenv("SAMVAD_DEFAULT_LANGUAGE", "hi-IN")
    s = load_settings()
    assert s.vad.min_silence_ms == 250
    assert s.default_language == "hi-IN"


def test_bad_config_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("vad: {threshold: 7}\n")
    with pytest.raises(ValueError):
        load_settings(bad)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.yaml")


def test_events_roundtrip_json_with_base64_audio():
    audio = AudioEvent(turn_id="t1", index=0, seq=3, sample_rate=22050, audio=b"\x00\x01\xff")
    wire = audio.model_dump_json()
    assert '"audio":"AAH/"' in wire  # base64, not a list of ints
    assert parse_event(wire) == audio
    tr = TranscriptEvent(turn_id="t1", transcript=Transcript(text="hi", language_code="en-IN", confidence=0.9))
    assert parse_event(tr.model_dump_json()) == tr
    done = TurnDoneEvent(turn_id="t1", response=LLMResponse(response_text="ok"), language_code="en-IN")
    back = parse_event(done.model_dump_json())
    assert back.type == "turn.done" and back.response.response_text == "ok"


def test_provider_keys_by_documented_name_survive_the_trip_to_replicas(monkeypatch):
    import pickle

    from samvad.settings import Settings

    monkeypatch.setenv("SAMVAD_SARVAM_API_KEY", "sk-test-123")
    s = load_settings(REPO_ROOT / "configs" / "sarvam.yaml")
    assert s.tts.providers == ["sarvam", "espeak"]
    shipped = pickle.loads(pickle.dumps(s.model_dump()))  # what deployments and actors receive
    assert Settings.model_validate(shipped).providers.sarvam.api_key.get_secret_value() == "sk-test-123"
    assert "sk-test-123" not in repr(s) and "sk-test-123" not in s.model_dump_json()


def test_costs_from_the_price_table():
    from samvad.contracts import ProviderCall, Usage
    from samvad.cost import price, totals

    s = load_settings()
    calls = [
        price(
            ProviderCall(stage="tts", provider="sarvam", model="bulbul:v3", usage=Usage(characters=10000)), s.pricing
        ),
        price(
            ProviderCall(stage="asr", provider="sarvam", model="saaras:v3", usage=Usage(audio_seconds=3600)), s.pricing
        ),
        price(
            ProviderCall(stage="tts", provider="elevenlabs", model="eleven_flash_v2_5", usage=Usage(characters=100)),
            s.pricing,
        ),
        price(
            ProviderCall(
                stage="llm",
                provider="sarvam",
                model="sarvam-105b",
                usage=Usage(input_tokens=1_000_000, cached_tokens=0, output_tokens=1_000_000),
            ),
            s.pricing,
        ),
        price(ProviderCall(stage="tts", provider="nobody", model="x"), s.pricing),
    ]
    assert calls[0].cost == pytest.approx(30.0) and calls[0].currency == "INR"
    assert calls[1].cost == pytest.approx(30.0, rel=1e-3)
    assert calls[2].cost == pytest.approx(50.0) and calls[2].currency == "credits"
    assert calls[3].cost == pytest.approx(29.28 + 73.20)
    assert calls[4].currency == "unpriced"
    assert totals(calls)["credits"] == pytest.approx(50.0)
