"""Twilio Media Streams, bidirectional (`<Connect><Stream>`): camelCase JSON, base64 μ-law at
8 kHz both ways, marks echoed when the audio before them has played, `clear` to drop buffered
audio (twilio.com/docs/voice/media-streams/websocket-messages)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from samvad.telephony.base import (
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
    protocol: str = "Call"


class _StartBody(BaseModel):
    streamSid: str
    callSid: str
    accountSid: str = ""
    tracks: list[str] = ["inbound"]
    customParameters: dict[str, str] = {}
    mediaFormat: dict[str, Any] = {}


class _Start(BaseModel):
    event: Literal["start"]
    streamSid: str
    start: _StartBody


class _Media(BaseModel):
    event: Literal["media"]
    streamSid: str
    media: MediaBody


class Twilio(Carrier):
    name = "twilio"
    encoding = "mulaw"
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
            # Twilio's start has no numbers: the answer webhook passes them as custom parameters.
            p = s.customParameters
            return Started(s.callSid, s.streamSid, p.get("from"), p.get("to"), p)
        if isinstance(message, _Media):
            if message.media.track != "inbound":
                return Other("media.outbound")
            return Media(decode_payload(message.media.payload, self.max_media_bytes))
        if isinstance(message, DtmfMessage):
            return Dtmf(message.dtmf.digit)
        if isinstance(message, MarkMessage):
            return Played(message.mark.name)
        if isinstance(message, StopMessage):
            return Stopped("hangup")
        return Other(message.event)

    def media(self, audio: bytes) -> dict[str, Any]:
        return {"event": "media", "streamSid": self.stream_id, "media": {"payload": encode_payload(audio)}}

    def mark(self, name: str) -> dict[str, Any]:
        return {"event": "mark", "streamSid": self.stream_id, "mark": {"name": name}}

    def clear(self) -> dict[str, Any]:
        return {"event": "clear", "streamSid": self.stream_id}
