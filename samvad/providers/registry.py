"""Build each stage's provider chain from config: the ordered provider list (each name built by
the vendor that registered it, samvad.providers.catalog), each provider optionally wrapped in the
Redis cache, and a failover chain when there is more than one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from samvad.providers import catalog
from samvad.providers.base import Chat, LanguageIdentifier, Recognizer, Speech, Translation
from samvad.providers.breaker import CircuitBreaker
from samvad.providers.cached import CachedSTT, CachedTranslator, CachedTTS
from samvad.providers.fallback import FallbackChat, FallbackSTT, FallbackTranslator, FallbackTTS
from samvad.settings import Settings
from samvad.storage.cache import Cache

if TYPE_CHECKING:
    from samvad.providers.listener import Listener

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


def build_language_id(settings: Settings) -> LanguageIdentifier | None:
    """The typed-text language identifier, or None (offline detection only)."""
    name = settings.language_id.provider
    return None if name is None else catalog.table(lambda v: v.language_id)[name](settings)


def build_listener(settings: Settings) -> Listener | None:
    """The realtime recogniser voice calls stream utterances to while the caller speaks, with
    its circuit breaker (samvad.providers.listener), or None."""
    name = settings.asr.streaming
    if name is None:
        return None
    from samvad.providers.listener import Listener

    p = settings.providers
    breaker = _breakers.setdefault("asr_realtime", {}).setdefault(
        name, CircuitBreaker(p.breaker_failures, p.breaker_cooldown_s)
    )
    return Listener(catalog.table(lambda v: v.realtime_asr)[name](settings), breaker)


def build_stt(settings: Settings, cache: Cache | None = None) -> Recognizer:
    build = catalog.table(lambda v: v.asr)
    built = [build[n](settings) for n in settings.asr.providers]
    if cache is not None:
        built = [CachedSTT(p, cache) for p in built]
    return _chain("asr", settings, built, FallbackSTT)


def build_llm(settings: Settings, *, warm_now: bool = False) -> Chat:
    """`warm_now`: the offline answerer has encoded the live index's sentences (or spent
    `llm.extractive.warm_wait_s` on them) before this returns, so a Serve replica takes no turn
    cold; else they are encoded in the background."""
    build = catalog.table(lambda v: v.llm)
    built = [build[n](settings, warm_now) for n in settings.llm.providers]
    return _chain("llm", settings, built, FallbackChat)


def build_translator(settings: Settings, cache: Cache | None = None) -> Translation:
    build = catalog.table(lambda v: v.translation)
    built = [build[n](settings) for n in settings.translation.providers]
    if cache is not None:
        built = [CachedTranslator(p, cache) if p.name != "identity" else p for p in built]
    return _chain("translation", settings, built, FallbackTranslator)


def build_tts(settings: Settings, cache: Cache | None = None) -> Speech:
    build = catalog.table(lambda v: v.tts)
    built = [build[n](settings) for n in settings.tts.providers]
    if cache is not None:
        built = [CachedTTS(p, cache) for p in built]
    return _chain("tts", settings, built, FallbackTTS)
