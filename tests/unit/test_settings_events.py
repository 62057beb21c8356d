import pytest

from samvad.contracts import Transcript
from samvad.events import AudioEvent, TranscriptEvent, TurnDoneEvent, parse_event
from samvad.contracts import LLMResponse
from samvad.settings import load_settings

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
