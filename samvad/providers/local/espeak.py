"""Offline TTS: eSpeak NG from `espeakng-loader`, driven through ctypes (no apt, no subprocess).

eSpeak keeps global state, so one synthesis runs at a time per process (a lock); the synthesis
runs in a worker thread and its callback hands PCM chunks to the event loop as they are made,
so the first chunk is out long before the sentence is finished. Returning 1 from the callback
aborts synthesis: that is how a cancelled turn stops eSpeak mid-sentence.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from samvad.errors import InputError
from samvad.providers.base import AudioChunk, CallRecord, Capabilities, SpeechRequest, TextToSpeech
from samvad.settings import EspeakSettings, Language

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Engine:
    """The process-wide eSpeak library handle (eSpeak cannot be initialised twice)."""

    _instance: _Engine | None = None
    _create_lock = threading.Lock()

    def __init__(self, chunk_ms: int) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, chunk_ms, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError("eSpeak NG failed to initialise")
        self.lib = lib
        self.sample_rate = rate
        self.lock = threading.Lock()
        self._sink: Callable[[bytes], bool] | None = None
        self._callback = _CALLBACK(self._on_audio)  # kept referenced: ctypes would free it
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls, chunk_ms: int) -> _Engine:
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = cls(chunk_ms)
            return cls._instance

    def _on_audio(self, wav: int, n_samples: int, _events: object) -> int:
        sink = self._sink
        if sink is None:
            return 1
        if n_samples > 0:
            return 1 if sink(ctypes.string_at(wav, n_samples * 2)) else 0
        return 0

    def synthesize(self, text: str, voice: str, rate_wpm: int, sink: Callable[[bytes], bool]) -> None:
        """Blocking: calls `sink(pcm_bytes) -> stop?` for every chunk."""
        data = text.encode("utf-8")
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise InputError(f"eSpeak has no voice {voice!r}", code="unknown_voice")
            self.lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
            self._sink = sink
            try:
                self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            finally:
                self._sink = None


@functools.cache
def known_voices() -> tuple[frozenset[str], frozenset[str]]:
    """The voices and variants shipped in eSpeak's data (lower-case): the allow-list a caller's
    `voice` must be in, so no caller text reaches eSpeak's voice-file lookup unchecked."""
    import espeakng_loader

    data = Path(espeakng_loader.get_data_path())
    voices = frozenset(p.name.lower() for p in (data / "lang").rglob("*") if p.is_file())
    variants = frozenset(p.name.lower() for p in (data / "voices" / "!v").iterdir() if p.is_file())
    return voices, variants


def check_voice(voice: str) -> str:
    """`voice` ("name" or "name+variant") if eSpeak ships it; otherwise `unknown_voice`."""
    voices, variants = known_voices()
    name, _, variant = voice.lower().partition("+")
    if name not in voices or (variant and variant not in variants):
        raise InputError(f"eSpeak has no voice {voice[:64]!r} (e.g. en-us, hi, ta, en-us+f3)", code="unknown_voice")
    return voice


class EspeakTTS(TextToSpeech):
    name = "espeak"

    def __init__(self, settings: EspeakSettings, languages: dict[str, Language]) -> None:
        super().__init__(model="espeak-ng")
        self._settings = settings
        self._voices = {code: lang.espeak_voice for code, lang in languages.items() if lang.espeak_voice}
        self._engine = _Engine.get(settings.chunk_ms)
        self.sample_rate = self._engine.sample_rate
        self.capabilities = Capabilities(languages=frozenset(self._voices))

    def voice_for(self, request: SpeechRequest) -> str:
        if request.voice:
            return check_voice(request.voice)
        voice = self._voices.get(request.language)
        if voice is None:
            raise InputError(f"no offline voice for language {request.language!r}", code="unsupported_language")
        return voice

    async def _stream_impl(self, request: SpeechRequest, rec: CallRecord) -> AsyncIterator[AudioChunk]:
        voice = self.voice_for(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def sink(pcm: bytes) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, pcm)
            return stop.is_set()

        def work() -> None:
            try:
                self._engine.synthesize(request.text, voice, self._settings.rate_wpm, sink)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as exc:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        worker = loop.run_in_executor(None, work)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield AudioChunk(pcm16=item, sample_rate=self.sample_rate)
        finally:
            stop.set()  # a cancelled consumer stops eSpeak at its next chunk
            await asyncio.shield(worker)
