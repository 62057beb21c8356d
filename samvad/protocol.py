"""The WebSocket voice-session protocol (docs/voice-session.md): client messages and the
server events that are not turn events. Turn events are those of `samvad.events`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from samvad.settings import Mode, OutputScript

# A voice name or id: letters, digits, "_", "-", "+" (eSpeak variants). No "/", "." or "%": a
# voice never reaches a file path or URL unchecked; each TTS also checks its own allow-list.
Voice = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_+\-]{0,63}$", description="a voice name or id")]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudioFormat(_Msg):
    encoding: Literal["pcm16", "mulaw"] = "pcm16"  # mulaw: 8 kHz telephony
    sample_rate: Literal[8000, 16000] = 16000


class SessionStart(_Msg):
    type: Literal["session.start"]
    language: str | None = None
    mode: Mode | None = None
    voice: Voice | None = None
    output_script: OutputScript | None = None
    knowledge_base: str | None = Field(None, max_length=40)  # a new session's (rag.knowledge_bases)
    audio: AudioFormat = AudioFormat()
    api_key: str | None = Field(None, max_length=256)  # for browsers, which cannot set headers


class SessionUpdate(_Msg):
    type: Literal["session.update"]
    language: str | None = None
    mode: Mode | None = None
    voice: Voice | None = None
    output_script: OutputScript | None = None


class TextInput(_Msg):
    type: Literal["text.input"]
    text: str = Field(min_length=1, max_length=2000)


class ResponseCancel(_Msg):
    type: Literal["response.cancel"]


class Ping(_Msg):
    type: Literal["ping"]


ClientMessage = Annotated[SessionStart | SessionUpdate | TextInput | ResponseCancel | Ping, Field(discriminator="type")]
client_message = TypeAdapter(ClientMessage)


class SessionStarted(BaseModel):
    type: Literal["session.started"] = "session.started"
    session_id: str
    resume_token: str
    resumed: bool
    language: str
    mode: str
    interrupted_turn: str | None = None  # a turn cut off by the previous connection dropping


class VadEvent(BaseModel):
    type: Literal["vad.speech_start", "vad.speech_end"]
    at: float  # seconds of audio received in this connection


class ResponseCancelled(BaseModel):
    """Stop playback now: the turn was interrupted (barge-in, response.cancel)."""

    type: Literal["response.cancelled"] = "response.cancelled"
    turn_id: str
    reason: Literal["barge_in", "client"]
    heard_text: str  # what the assistant message keeps


class Backchannel(BaseModel):
    type: Literal["vad.backchannel"] = "vad.backchannel"
    text: str


class SessionClosing(BaseModel):
    """The server is shutting down: the call is closed (code 1012) after the answer playing now.
    Reconnect to resume it: `?session_id=…&resume_token=…` reaches another replica."""

    type: Literal["session.closing"] = "session.closing"
    reason: Literal["shutdown"] = "shutdown"
    session_id: str
    resume_token: str
    retry_after_s: float = 1.0


class Pong(BaseModel):
    type: Literal["pong"] = "pong"


# Close codes (besides 1000 normal and 1011 internal error); every one is in docs/voice-session.md's
# table (a test holds them equal).
CLOSE_BAD_START = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403  # an expired resume token, or another site's page (origin)
CLOSE_NOT_FOUND = 4404
CLOSE_IDLE = 4408
CLOSE_SESSION_TOO_LONG = 4410
CLOSE_TOO_MANY_SESSIONS = 4429
CLOSE_SERVICE_RESTART = 1012  # the server is going away: resume the session on a new connection
CLOSE_TOO_BIG = 1009  # a text message over voice.max_text_bytes
CLOSE_TRY_LATER = 1013  # a limit could not be checked now (Redis or the database is down)
