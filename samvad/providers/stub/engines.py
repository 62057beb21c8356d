"""Zero-cost stub engines: every stage answers at once with fixed output. They exist to measure
what the plumbing costs (bench/overhead.py): the pipeline with no inference in it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from samvad.audio import Audio
from samvad.contracts import Passage, Transcript, Usage
from samvad.providers.base import (
    AudioChunk,
    CallRecord,
    ChatModel,
    ChatRequest,
    SpeechRequest,
    SpeechToText,
    TextToSpeech,
)

_RATE = 16000


class StubSTT(SpeechToText):
    name = "stub"

    def __init__(self) -> None:
        super().__init__(model="stub")

    async def _transcribe_impl(self, audio: Audio, language: str | None, rec: CallRecord) -> Transcript:
        return Transcript(text="what is the stub answer", language_code=language or "en-IN", confidence=1.0)


class StubChat(ChatModel):
    name = "stub"

    def __init__(self) -> None:
        super().__init__(model="stub")

    async def _stream_impl(self, request: ChatRequest, rec: CallRecord) -> AsyncIterator[str]:
        rec.usage = Usage(input_tokens=len(request.question.split()), output_tokens=5)
        yield "This is the stub answer. "


class StubTTS(TextToSpeech):
    name = "stub"

    def __init__(self) -> None:
        super().__init__(model="stub")

    async def _stream_impl(self, request: SpeechRequest, rec: CallRecord) -> AsyncIterator[AudioChunk]:
        yield AudioChunk(pcm16=b"\x00\x00" * (_RATE // 10), sample_rate=_RATE)  # 100 ms of silence


class StubRetriever:
    async def asearch(self, query: str, k: int) -> list[Passage]:
        return [Passage(chunk_id=0, source="stub.md", text="This is the stub answer.", score=1.0)]

    async def alookup(
        self, text: str, library: object, k: int, query: str | None = None, knowledge_base: str | None = None
    ) -> tuple[float | None, list[Passage]]:
        return None, await self.asearch(query or text, k)
