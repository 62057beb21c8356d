"""Request and response bodies of the REST API (pydantic: validated, documented at /docs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from samvad.protocol import Voice
from samvad.settings import Mode, OutputScript
from samvad.turn_result import AudioOut, TurnOut  # noqa: F401 - the turn's answer, built where it runs


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TtsBody(_Body):
    text: str = Field(min_length=1, max_length=2500)
    language: str = "en-IN"
    voice: Voice | None = None


class SessionBody(_Body):
    language: str | None = Field(
        None,
        description='the caller\'s language, or "auto": detected in each utterance '
        "(default: the service's `default_language`)",
    )
    mode: Mode | None = Field(
        None, description="the answer's register (default: the service's `translation.default_mode`)"
    )
    voice: Voice | None = None
    output_script: OutputScript | None = None
    knowledge_base: str | None = Field(
        None,
        max_length=40,
        description="the knowledge base the session answers from (one of the service's `rag.knowledge_bases`; "
        "default: the default one)",
    )


class TurnBody(_Body):
    session_id: str | None = Field(None, description="continue this session; omitted: a new session is created")
    text: str | None = Field(None, max_length=2000, description="the caller's question as text")
    audio_base64: str | None = Field(None, description="the question as a base64 WAV/FLAC/OGG file")
    language: str | None = Field(None, description="caller's language, or \"auto\" (default: the session's)")
    mode: Mode | None = None
    voice: Voice | None = None
    output_script: OutputScript | None = None
    speak: bool = Field(True, description="false: answer as text only")


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorOut(BaseModel):
    error: ErrorBody
