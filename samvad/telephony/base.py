"""What a carrier's media stream says, in one vocabulary, and what each carrier module answers:
parse an inbound message into an event, and render audio, a mark and a clear in its own shape."""

from __future__ import annotations

import abc
import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Started:
    call_id: str
    stream_id: str
    caller: str | None = None
    called: str | None = None
    params: dict[str, str] = field(default_factory=dict)  # the stream URL's custom parameters


@dataclass(frozen=True)
class Media:
    audio: bytes  # in the carrier's encoding (`Carrier.encoding`), 8 kHz mono


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Played:
    """The audio sent before mark `name` has played out to the caller."""

    name: str


@dataclass(frozen=True)
class Stopped:
    reason: str


@dataclass(frozen=True)
class Other:
    """A message with nothing for the call (connected, cleared, …)."""

    event: str


Event = Started | Media | Dtmf | Played | Stopped | Other


# Messages several carriers shape alike.
class _Digit(BaseModel):
    digit: str


class DtmfMessage(BaseModel):
    event: Literal["dtmf"]
    dtmf: _Digit


class _Name(BaseModel):
    name: str


class MarkMessage(BaseModel):
    event: Literal["mark"]
    mark: _Name


class MediaBody(BaseModel):
    payload: str
    track: str = "inbound"  # Exotel sends no track: its stream is the caller's


class StopMessage(BaseModel):
    event: Literal["stop"]
    stop: dict[str, Any] = {}


class BadMessage(ValueError):
    """Not a message of this carrier's protocol: malformed JSON, an unknown event, a field missing."""


def decode_payload(payload: str, max_bytes: int) -> bytes:
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise BadMessage(f"media payload over {max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadMessage("media payload is not base64") from None


def encode_payload(audio: bytes) -> str:
    return base64.b64encode(audio).decode("ascii")


class Carrier(abc.ABC):
    """One call's view of a carrier protocol (it learns the stream id from the start message)."""

    name: str
    encoding: Literal["mulaw", "pcm16"]  # the audio both ways, mono
    sample_rate: Literal[8000, 16000] = 8000  # Exotel's may be 16 kHz (its start message says)
    frame_bytes: int = 1  # outbound audio is sent in multiples of this
    min_chunk_bytes: int = 0  # and at least this much per message (Exotel)
    events: dict[str, type[BaseModel]]  # inbound event name -> its message model

    def __init__(self, max_media_bytes: int) -> None:
        self.stream_id = ""
        self.max_media_bytes = max_media_bytes

    def parse(self, raw: str) -> Event:
        try:
            data = json.loads(raw)
        except ValueError:
            raise BadMessage("not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise BadMessage("no event name")
        model = self.events.get(data["event"])
        if model is None:
            raise BadMessage(f"unknown event {data['event'][:40]!r}")
        try:
            message = model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise BadMessage(f"{data['event']}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        event = self.event(message)
        if isinstance(event, Started):
            self.stream_id = event.stream_id
        return event

    @abc.abstractmethod
    def event(self, message: Any) -> Event: ...

    @abc.abstractmethod
    def media(self, audio: bytes) -> dict[str, Any]: ...

    @abc.abstractmethod
    def mark(self, name: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def clear(self) -> dict[str, Any]: ...
