"""Typed turn events (DESIGN.md §1). A turn is an async stream of these; each serialises to the
JSON the WebSocket protocol sends (`event.model_dump_json()`; audio bytes travel as base64)."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, PlainSerializer, TypeAdapter

from samvad.contracts import GuardrailFlag, LLMResponse, Passage, ProviderCall, Transcript


def _from_base64(value: Any) -> Any:
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


# Standard (not URL-safe) base64 in JSON, so a browser's atob() decodes it.
Base64Audio = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"),
]


class _Event(BaseModel):
    turn_id: str


class TranscriptEvent(_Event):
    type: Literal["transcript"] = "transcript"
    transcript: Transcript
    final: bool = True


class GuardrailEvent(_Event):
    """Input checks on the caller's words: flags, and the redacted text that is stored and used."""

    type: Literal["guardrail"] = "guardrail"
    flags: list[GuardrailFlag]
    redacted_text: str
    action: Literal["allow", "redact", "refuse", "escalate"] = "allow"


class RetrievalEvent(_Event):
    type: Literal["retrieval"] = "retrieval"
    passages: list[Passage]


class ResponseDeltaEvent(_Event):
    """One answer sentence, in the caller's language (`source_text` is what the LLM wrote)."""

    type: Literal["response.delta"] = "response.delta"
    index: int
    text: str
    language_code: str
    source_text: str


class AudioEvent(_Event):
    """A chunk of PCM16 mono audio for sentence `index`; `seq` counts chunks across the turn."""

    type: Literal["audio"] = "audio"
    index: int
    seq: int
    sample_rate: int
    encoding: Literal["pcm16"] = "pcm16"
    audio: Base64Audio


class StageTiming(BaseModel):
    ttfb_ms: float | None = None  # time to the stage's first output
    total_ms: float = 0.0


class TurnDoneEvent(_Event):
    type: Literal["turn.done"] = "turn.done"
    outcome: Literal["complete", "failed", "interrupted"] = "complete"
    transcript: Transcript | None = None
    response: LLMResponse
    language_code: str
    stages: dict[str, StageTiming] = {}
    first_audio_ms: float | None = None  # turn start (end of speech) -> first audio chunk
    calls: list[ProviderCall] = []
    flags: list[str] = []  # non-guardrail notices, e.g. translation_unavailable:hi-IN
    cost: dict[str, float] = {}  # currency -> total


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str
    message: str
    retryable: bool = False
    status: int = 500  # the HTTP status this error maps to (4xx: the client must change the request)


TurnEvent = Annotated[
    TranscriptEvent | GuardrailEvent | RetrievalEvent | ResponseDeltaEvent | AudioEvent | TurnDoneEvent | ErrorEvent,
    Field(discriminator="type"),
]
turn_event_adapter: TypeAdapter[TurnEvent] = TypeAdapter(TurnEvent)


def parse_event(data: str | bytes) -> TurnEvent:
    """Parse one JSON-encoded event (the inverse of `event.model_dump_json()`)."""
    return turn_event_adapter.validate_json(data)
