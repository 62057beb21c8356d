"""Data contracts between stages (the seed's payloads) and usage records for cost tracking."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Stage = Literal["asr", "retrieval", "llm", "translation", "tts", "language_id"]


class Segment(BaseModel):
    start: float
    end: float
    text: str
    confidence: float | None = None


class Transcript(BaseModel):
    """The seed's transcript payload."""

    text: str
    language_code: str
    confidence: float = Field(ge=0.0, le=1.0)
    raw_segments: list[Segment] = []
    # How sure the language detection was (0..1), when the language was detected rather than given.
    language_confidence: float | None = Field(None, ge=0.0, le=1.0)


class TokenUsage(BaseModel):
    input: int = 0
    output: int = 0
    cached: int = 0


class GuardrailFlag(BaseModel):
    check: str
    severity: Literal["info", "low", "medium", "high"] = "info"
    action: Literal["allow", "redact", "refuse", "escalate"] = "allow"
    detail: str = ""


class ResponseMetadata(BaseModel):
    tokens: TokenUsage = TokenUsage()
    provider: str = ""
    model: str = ""
    sources: list[str] = []  # document ids the answer was drawn from
    context_messages: int = 0  # history messages the model was given


class LLMResponse(BaseModel):
    """The seed's LLM response payload."""

    response_text: str
    guardrail_flags: list[GuardrailFlag] = []
    metadata: ResponseMetadata = ResponseMetadata()


class Passage(BaseModel):
    chunk_id: int
    source: str  # document id: path relative to the corpus root
    heading: str = ""
    text: str
    score: float


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Usage(BaseModel):
    """Billable units of one provider call."""

    audio_seconds: float = 0.0
    characters: int = 0
    input_tokens: int = 0
    output_tokens: int = 0  # reasoning tokens included: they are billed as output
    cached_tokens: int = 0
    reasoning_tokens: int = 0  # of output_tokens, the model's reasoning (never spoken)
    estimated: bool = False  # the provider reported no usage: counted from the text (about 4 characters a token)


class ProviderCall(BaseModel):
    """One call to one provider: what the provider-calls table stores."""

    stage: Stage
    provider: str
    model: str
    usage: Usage = Usage()
    retries: int = 0
    cache_hit: bool = False  # answered from the Redis cache: no provider was billed
    ttfb_ms: float | None = None
    latency_ms: float = 0.0
    outcome: Literal["ok", "error", "cancelled"] = "ok"
    # What failed, as a client is told it ("<code>: <public message>"); the provider's own text
    # (its internals, sometimes an echo of the request) is `error_detail`, kept for the
    # provider-calls table and never serialised to a client.
    error: str | None = None
    error_detail: str | None = Field(None, exclude=True)
    truncated: bool = False  # the model stopped at its token limit (finish_reason "length")
    cost: float = 0.0
    currency: str = "INR"
