"""Zero-cost stub engines (`engines`): what the plumbing costs with no inference in it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from samvad.providers.vendor import Vendor

if TYPE_CHECKING:
    from samvad.providers.base import Chat, Recognizer, Speech
    from samvad.settings import Settings


def _asr(s: Settings) -> Recognizer:
    from samvad.providers.stub.engines import StubSTT

    return StubSTT()


def _llm(s: Settings, warm_now: bool) -> Chat:
    from samvad.providers.stub.engines import StubChat

    return StubChat()


def _tts(s: Settings) -> Speech:
    from samvad.providers.stub.engines import StubTTS

    return StubTTS()


VENDOR = Vendor("stub", asr={"stub": _asr}, llm={"stub": _llm}, tts={"stub": _tts})
