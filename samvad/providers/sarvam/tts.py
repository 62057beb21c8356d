"""Sarvam text-to-speech (Bulbul) over HTTP streaming: raw PCM16 (`linear16`) chunks as they
are synthesised. Speakers are checked against the model before any request is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

from samvad.audio import whole_samples
from samvad.errors import InputError
from samvad.providers.base import AudioChunk, CallRecord, Capabilities, SpeechRequest, TextToSpeech
from samvad.providers.sarvam.common import CORE_LANGUAGES, http, split_text
from samvad.providers.sarvam.config import SarvamSettings

SPEAKERS = {
    "bulbul:v2": frozenset({"anushka", "manisha", "vidya", "arya", "abhilash", "karun", "hitesh"}),
    "bulbul:v3": frozenset(
        "shubh aditya ritu priya neha rahul pooja rohan simran kavya amit dev ishita shreya ratan varun manan "
        "sumit roopa kabir aayan ashutosh advait anand tanya tarun sunny mani gokul vijay shruti suhani mohit "
        "kavitha rehan soham rupali".split()
    ),
}
STREAM_LIMIT = 3500  # characters per /text-to-speech/stream request


def check_speaker(model: str, speaker: str) -> None:
    if model == "bulbul:v4-flash":
        # v4 personas look like <name>_<lang>_<style>; short v2/v3 names are rejected there.
        if speaker.count("_") < 2 or speaker != speaker.lower():
            raise InputError(
                f"{speaker!r} is not a bulbul:v4-flash persona (e.g. shubh_enhi_ads)", code="unknown_voice"
            )
    elif speaker not in SPEAKERS[model]:
        raise InputError(f"speaker {speaker!r} does not exist for {model}", code="unknown_voice")


class SarvamTTS(TextToSpeech):
    name = "sarvam"
    capabilities = Capabilities(languages=CORE_LANGUAGES)

    def __init__(self, settings: SarvamSettings) -> None:
        super().__init__(model=settings.tts_model)
        self._s = settings
        self._http = http("tts", settings)
        check_speaker(settings.tts_model, settings.tts_speaker)

    async def _stream_impl(self, request: SpeechRequest, rec: CallRecord) -> AsyncIterator[AudioChunk]:
        if request.language not in CORE_LANGUAGES:
            raise InputError(f"Sarvam TTS cannot speak {request.language}", code="unsupported_language")
        speaker = request.voice or self._s.tts_speaker
        check_speaker(self._s.tts_model, speaker)
        rate = self._s.tts_sample_rate
        for piece in split_text(request.text, STREAM_LIMIT):
            body = {
                "text": piece,
                "language_code": request.language,
                "model": self._s.tts_model,
                "speaker": speaker,
                "pace": self._s.tts_pace,
                "speech_sample_rate": rate,
                "output_audio_codec": "linear16",
            }
            async with self._http.stream(rec, "POST", "/text-to-speech/stream", json=body) as response:
                async for pcm in whole_samples(response.aiter_bytes()):
                    yield AudioChunk(pcm16=pcm, sample_rate=rate)
