"""Plivo Audio Streams, bidirectional (`<Stream bidirectional="true">`, contentType
audio/x-mulaw;rate=8000): `start` first (no connected message), base64 μ-law media, `playAudio`
to speak, `checkpoint` answered by `playedStream` once the audio before it has played,
`clearAudio` answered by `clearedAudio`; the call ends when the socket closes
(plivo.com/docs/voice/audio-streaming)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from samvad.telephony.base import (
    Carrier,
    Dtmf,
    DtmfMessage,
    Event,
    Media,
    MediaBody,
    Other,
    Played,
    Started,
    decode_payload,
    encode_payload,
)


class _StartBody(BaseModel):
    callId: str
    streamId: str
    accountId: str = ""
    tracks: list[str] = ["inbound"]
    mediaFormat: dict[str, Any] = {}


class _Start(BaseModel):
    event: Literal["start"]
    start: _StartBody
    extra_headers: str = ""


class _Media(BaseModel):
    event: Literal["media"]
    media: MediaBody


class _Played(BaseModel):
    event: Literal["playedStream", "played"]  # "played" in Plivo's support articles
    name: str


class _Cleared(BaseModel):
    event: Literal["clearedAudio"]


def _headers(raw: str) -> dict[str, str]:
    """Plivo's extraHeaders: `k1=v1,k2=v2` (or `;`-separated), alphanumeric."""
    pairs = (item.split("=", 1) for item in raw.replace(";", ",").split(",") if "=" in item)
    return {k.strip(): v.strip() for k, v in pairs}


class Plivo(Carrier):
    name = "plivo"
    encoding = "mulaw"
    events = {
        "start": _Start,
        "media": _Media,
        "dtmf": DtmfMessage,
        "playedStream": _Played,
        "played": _Played,
        "clearedAudio": _Cleared,
    }

    def event(self, message: Any) -> Event:
        if isinstance(message, _Start):
            s = message.start
            params = _headers(message.extra_headers)
            return Started(s.callId, s.streamId, params.get("from"), params.get("to"), params)
        if isinstance(message, _Media):
            if message.media.track != "inbound":
                return Other("media.outbound")
            return Media(decode_payload(message.media.payload, self.max_media_bytes))
        if isinstance(message, DtmfMessage):
            return Dtmf(message.dtmf.digit)
        if isinstance(message, _Played):
            return Played(message.name)
        return Other(message.event)

    def media(self, audio: bytes) -> dict[str, Any]:
        return {
            "event": "playAudio",
            "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": encode_payload(audio)},
        }

    def mark(self, name: str) -> dict[str, Any]:
        return {"event": "checkpoint", "streamId": self.stream_id, "name": name}

    def clear(self) -> dict[str, Any]:
        return {"event": "clearAudio", "streamId": self.stream_id}
