"""Build each stage's provider chain from config: the ordered provider list, each provider
optionally wrapped in the Redis cache, and a failover chain when there is more than one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from samvad.providers.base import Chat, Recognizer, Speech, Translation
from samvad.providers.breaker import CircuitBreaker
from samvad.providers.cached import CachedSTT, CachedTranslator, CachedTTS
from samvad.providers.fallback import FallbackChat, FallbackSTT, FallbackTranslator, FallbackTTS
from samvad.settings import Settings
from samvad.storage.cache import Cache

if TYPE_CHECKING:
    from samvad.providers.listener import Listener
    from samvad.providers.sarvam.language_id import SarvamLanguageId

_breakers: dict[str, dict[str, CircuitBreaker]] = {}  # stage -> provider -> breaker, per process


def breakers(stage: str, settings: Settings) -> dict[str, CircuitBreaker]:
    p = settings.providers
    table = _breakers.setdefault(stage, {})
    for name in getattr(settings, stage).providers:
        table.setdefault(name, CircuitBreaker(p.breaker_failures, p.breaker_cooldown_s))
    return table


E = TypeVar("E", Recognizer, Chat, Translation, Speech)


def _chain(
    stage: str, settings: Settings, built: list[E], fallback: Callable[[str, list[E], dict[str, CircuitBreaker]], E]
) -> E:
    """One engine as it is, or several as one failover chain (fallback.py)."""
    return built[0] if len(built) == 1 else fallback(stage, built, breakers(stage, settings))


def _stt(name: str, s: Settings) -> Recognizer:
    if name == "whisper":
        from samvad.providers.local.whisper import WhisperSTT

        return WhisperSTT(s.asr.whisper)
    if name == "sarvam":
        from samvad.providers.sarvam.asr import SarvamSTT

        return SarvamSTT(s.providers.sarvam)
    if name == "sarvam_stream":
        from samvad.providers.sarvam.asr_stream import SarvamStreamingSTT

        return SarvamStreamingSTT(s.providers.sarvam)
    from samvad.providers.stub import StubSTT

    return StubSTT()


def _llm(name: str, s: Settings, warm_now: bool = False) -> Chat:
    if name == "extractive":
        from samvad.embeddings import get_embedder
        from samvad.providers.local.extractive import ExtractiveAnswerer

        answerer = ExtractiveAnswerer(s.llm.extractive, get_embedder(s.embeddings))
        if s.rag.retriever == "faiss":
            warming = answerer.warm_from(s.rag.index_dir)
            if warm_now:
                warming.join(s.llm.extractive.warm_wait_s)
        return answerer
    if name == "sarvam":
        from samvad.providers.sarvam.llm import SarvamChat

        return SarvamChat(s.providers.sarvam, s.providers.system_prompt)
    if name == "openai":
        from samvad.providers.openai_compat.llm import OpenAICompatChat

        return OpenAICompatChat(s.providers.openai, s.providers.system_prompt)
    from samvad.providers.stub import StubChat

    return StubChat()


def _translator(name: str, s: Settings) -> Translation:
    if name == "sarvam":
        from samvad.providers.sarvam.translate import SarvamTranslator

        return SarvamTranslator(s.providers.sarvam)
    from samvad.providers.local.identity import IdentityTranslator

    return IdentityTranslator()


def build_language_id(settings: Settings) -> SarvamLanguageId | None:
    """The typed-text language identifier, or None (offline detection only)."""
    if settings.language_id.provider != "sarvam":
        return None
    from samvad.providers.sarvam.language_id import SarvamLanguageId

    return SarvamLanguageId(settings.providers.sarvam)


def build_listener(settings: Settings) -> Listener | None:
    """The realtime recogniser voice calls stream utterances to while the caller speaks, with
    its circuit breaker (samvad.providers.listener), or None."""
    if settings.asr.streaming != "sarvam":
        return None
    from samvad.providers.listener import Listener
    from samvad.providers.sarvam.asr_realtime import SarvamRealtimeSTT

    p = settings.providers
    breaker = _breakers.setdefault("asr_realtime", {}).setdefault(
        "sarvam", CircuitBreaker(p.breaker_failures, p.breaker_cooldown_s)
    )
    return Listener(SarvamRealtimeSTT(p.sarvam), breaker)


def _tts(name: str, s: Settings) -> Speech:
    if name == "espeak":
        from samvad.providers.local.espeak import EspeakTTS

        return EspeakTTS(s.tts.espeak, s.languages)
    if name == "sarvam":
        from samvad.providers.sarvam.tts import SarvamTTS

        return SarvamTTS(s.providers.sarvam)
    if name == "elevenlabs":
        from samvad.providers.elevenlabs.tts import ElevenLabsTTS

        return ElevenLabsTTS(s.providers.elevenlabs)
    from samvad.providers.stub import StubTTS

    return StubTTS()


def build_stt(settings: Settings, cache: Cache | None = None) -> Recognizer:
    built = [_stt(n, settings) for n in settings.asr.providers]
    if cache is not None:
        built = [CachedSTT(p, cache) for p in built]
    return _chain("asr", settings, built, FallbackSTT)


def build_llm(settings: Settings, *, warm_now: bool = False) -> Chat:
    """`warm_now`: the offline answerer has encoded the live index's sentences (or spent
    `llm.extractive.warm_wait_s` on them) before this returns, so a Serve replica takes no turn
    cold; else they are encoded in the background."""
    built = [_llm(n, settings, warm_now) for n in settings.llm.providers]
    return _chain("llm", settings, built, FallbackChat)


def build_translator(settings: Settings, cache: Cache | None = None) -> Translation:
    built = [_translator(n, settings) for n in settings.translation.providers]
    if cache is not None:
        built = [CachedTranslator(p, cache) if p.name != "identity" else p for p in built]
    return _chain("translation", settings, built, FallbackTranslator)


def build_tts(settings: Settings, cache: Cache | None = None) -> Speech:
    built = [_tts(n, settings) for n in settings.tts.providers]
    if cache is not None:
        built = [CachedTTS(p, cache) for p in built]
    return _chain("tts", settings, built, FallbackTTS)
