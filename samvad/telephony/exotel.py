"""Exotel's Voicebot applet (bidirectional stream): snake_case JSON, base64 raw/slin (16-bit
little-endian PCM, 8 kHz mono) both ways, sent in chunks that are multiples of 320 bytes and at
least 3.2 KB (200 ms at 8 kHz), marks echoed when played, `clear` to drop buffered audio
(developer.exotel.com/docs/agentstream/stream-voicebot-applet). A 16 kHz stream (the applet's
`?sample-rate=16000`) is taken as such."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from samvad.telephony.base import (
    BadMessage,
    Carrier,
    Dtmf,
    DtmfMessage,
    Event,
    MarkMessage,
    Media,
    MediaBody,
    Other,
    Played,
    Started,
    StopMessage,
    Stopped,
    decode_payload,
    encode_payload,
)


class _Connected(BaseModel):
    event: Literal["connected"]


class _StartBody(BaseModel):
    stream_sid: str
    call_sid: str
    account_sid: str = ""
    # The numbers as Exotel sends them: E.164, or national with a leading 0.
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    custom_parameters: dict[str, str] = {}
    media_format: dict[str, Any] = {}


class _Start(BaseModel):
    event: Literal["start"]
    stream_sid: str
    start: _StartBody


class _Media(BaseModel):
    event: Literal["media"]
    stream_sid: str
    media: MediaBody


class Exotel(Carrier):
    name = "exotel"
    encoding = "pcm16"
    frame_bytes = 320  # 20 ms of 8 kHz PCM16
    min_chunk_bytes = 3200  # Exotel's minimum ("3.2 KB"): 200 ms of 8 kHz PCM16
    events = {
        "connected": _Connected,
        "start": _Start,
        "media": _Media,
        "dtmf": DtmfMessage,
        "mark": MarkMessage,
        "stop": StopMessage,
    }

    def event(self, message: Any) -> Event:
        if isinstance(message, _Start):
            s = message.start
            rate = str(s.media_format.get("sample_rate", "8000"))
            if rate not in ("8000", "16000"):  # the applet's 24 kHz option is not taken
                raise BadMessage(f"sample rate {rate[:8]}: configure the Voicebot applet for 8000 or 16000")
            self.sample_rate = 16000 if rate == "16000" else 8000
            return Started(s.call_sid, s.stream_sid or message.stream_sid, s.from_, s.to, s.custom_parameters)
        if isinstance(message, _Media):
            return Media(decode_payload(message.media.payload, self.max_media_bytes))
        if isinstance(message, DtmfMessage):
            return Dtmf(message.dtmf.digit)
        if isinstance(message, MarkMessage):
            return Played(message.mark.name)
        if isinstance(message, StopMessage):
            return Stopped(str(message.stop.get("reason") or "hangup"))
        return Other(message.event)

    def media(self, audio: bytes) -> dict[str, Any]:
        return {"event": "media", "stream_sid": self.stream_id, "media": {"payload": encode_payload(audio)}}

    def mark(self, name: str) -> dict[str, Any]:
        return {"event": "mark", "stream_sid": self.stream_id, "mark": {"name": name}}

    def clear(self) -> dict[str, Any]:
        return {"event": "clear", "stream_sid": self.stream_id}
