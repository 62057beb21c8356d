"""A carrier's media stream as the socket a `VoiceCall` runs over, so a phone call gets the
browser's voice call (VAD endpointing, early ASR, barge-in, backchannels) unchanged.

Inbound: the carrier's media becomes audio frames, its hang-up a disconnect, keypad digits a
typed turn (ended by `#`), its played marks the record of what the caller heard. Outbound: the
answer's audio is resampled to the line's rate (8 kHz; Exotel's may be 16) and encoded as the carrier wants it, a mark follows each
sentence's audio (the carrier echoes it once played), and a barge-in sends the carrier's clear,
so buffered audio stops at once. Everything else the voice call says (transcripts, VAD events)
has no place on a phone line and is dropped."""

from __future__ import annotations

import asyncio
import audioop
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import soxr
from starlette.websockets import WebSocket, WebSocketDisconnect

from samvad.call_budget import CallBudget
from samvad.protocol import TextInput
from samvad.providers.base import AudioChunk
from samvad.settings import TelephonySettings
from samvad.telephony.base import BadMessage, Carrier, Dtmf, Media, Played, Started, Stopped

log = logging.getLogger("samvad.telephony")
GREETING = "greeting"  # the mark (and `played` key) of the route's greeting
CLOSE_PROTOCOL = 1008  # policy violation: too many messages outside the carrier's protocol
DRAIN_WAIT_S = 0.05


MAX_MARKS = 512  # marks sent and not yet echoed that are remembered (older ones count as unplayed)


class PhoneSocket:
    def __init__(
        self,
        ws: WebSocket,
        carrier: Carrier,
        settings: TelephonySettings,
        max_text_bytes: int,
        budget: CallBudget | None = None,
    ) -> None:
        self.ws, self.carrier, self.s = ws, carrier, settings
        self.max_text_bytes = max_text_bytes
        # Every carrier message counts (connected, mark, dtmf too: the voice call sees only
        # audio and typed turns); past the rate the call is closed (OverBudget, 4429).
        self.budget = budget
        self._marks: dict[str, None] = {}  # names of the marks sent and not echoed yet, oldest first
        self.played: dict[str, set[int]] = {}  # turn id -> sentences whose audio the caller heard
        self.end_reason: str | None = None
        self.bad_messages = 0
        self.audio_sent_s = 0.0
        self._cancelled: set[str] = set()
        self._sentence: tuple[str, int] | None = None  # the sentence whose audio is going out
        self._pending = bytearray()  # encoded audio not sent yet (a carrier's chunk sizes)
        self._resampler: tuple[int, soxr.ResampleStream] | None = None
        self._digits = ""
        self._out = asyncio.Lock()  # the greeting and the call's answers share the outbound state
        self.greeting_playing = False
        self._gone = False  # the end of the call was read

    # what VoiceCall reads ------------------------------------------------------------------------
    async def receive(self) -> Any:
        """The next message as Starlette's `WebSocket.receive` shapes it: audio as bytes, a typed
        turn as text, the end of the call as a disconnect."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.end_reason = self.end_reason or "disconnected"
                self._gone = True
                return message
            if self.budget is not None:
                self.budget.message()
            raw = message.get("text")
            try:
                if raw is None:
                    raise BadMessage("binary frame (the protocol is JSON text)")
                if len(raw) > self.max_text_bytes:
                    raise BadMessage(f"message over {self.max_text_bytes} bytes")
                event = self.carrier.parse(raw)
                if isinstance(event, Started):
                    raise BadMessage("a second start")
            except BadMessage as exc:
                self.bad_messages += 1
                log.warning("%s call %s: %s", self.carrier.name, self.carrier.stream_id, str(exc)[:200])
                if self.bad_messages > self.s.max_bad_messages:
                    self.end_reason = "bad_messages"
                    await self.ws.close(CLOSE_PROTOCOL, f"more than {self.s.max_bad_messages} bad messages")
                    return {"type": "websocket.disconnect", "code": CLOSE_PROTOCOL}
                continue
            if isinstance(event, Media):
                return {"type": "websocket.receive", "bytes": event.audio}
            if isinstance(event, Played):
                # Only an echo of a mark this socket sent counts (once): any other name, made up
                # or malformed, records nothing and ends nothing.
                if self._marks.pop(event.name, False) is None:
                    turn, _, index = event.name.rpartition(".")
                    if turn not in self._cancelled:
                        self.played.setdefault(turn, set()).add(int(index))
                        if turn == GREETING:
                            self.greeting_playing = False
            elif isinstance(event, Dtmf):
                if text := self._keypad(event.digit):
                    return {
                        "type": "websocket.receive",
                        "text": TextInput(type="text.input", text=text).model_dump_json(),
                    }
            elif isinstance(event, Stopped):
                self.end_reason, self._gone = event.reason, True
                return {"type": "websocket.disconnect", "code": 1000}

    def _keypad(self, digit: str) -> str | None:
        """Digits pressed, as one typed turn once `#` ends them (or at the configured length)."""
        if digit == "#":
            text, self._digits = self._digits, ""
            return text or None
        if digit in "0123456789*":
            self._digits += digit
        if len(self._digits) >= self.s.max_dtmf_digits:
            text, self._digits = self._digits, ""
            return text
        return None

    def heard(self, turn_id: str) -> set[int]:
        return self.played.get(turn_id, set())

    async def drain(self) -> None:
        """Read what the carrier sent before the line dropped and the call has not read: the
        server may end the call (cancel it) as the disconnect arrives, before the last marks
        in its queue are read. Each read waits at most `DRAIN_WAIT_S`: what was sent is queued."""
        while not self._gone:
            try:
                await asyncio.wait_for(self.receive(), DRAIN_WAIT_S)
            except (TimeoutError, RuntimeError, WebSocketDisconnect):
                return  # nothing more queued, or the socket's end was read

    # what VoiceCall says -------------------------------------------------------------------------
    async def greet(self, speech: AsyncIterator[Any]) -> None:
        """Play the route's greeting (`AudioChunk`s) the way an answer is played, with its mark.
        The first answer's audio clears what is left of it (the caller spoke over it). A greeting
        that fails is logged: the call goes on without it."""
        self.greeting_playing = True
        try:
            async for chunk in speech:
                if not isinstance(chunk, AudioChunk):
                    continue
                async with self._out:
                    if GREETING in self._cancelled:
                        return
                    self._sentence = (GREETING, 0)
                    pcm = np.frombuffer(chunk.pcm16, dtype=np.int16)
                    await self._audio(self._to_line(pcm, chunk.sample_rate))
            async with self._out:
                if GREETING not in self._cancelled:
                    await self._end_sentence()
        except Exception:  # noqa: BLE001 - a TTS or line failure: the caller speaks first instead
            self.greeting_playing = False
            log.warning("%s call %s: greeting failed", self.carrier.name, self.carrier.stream_id, exc_info=True)

    async def send_text(self, text: str) -> None:
        async with self._out:
            await self._say(json.loads(text))

    async def _say(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "audio" and self.greeting_playing and GREETING not in self._cancelled:
            self.greeting_playing = False  # the first answer supersedes what is left of the greeting
            await self._clear(GREETING)
        if kind == "audio":
            where = (event["turn_id"], int(event["index"]))
            if self._sentence is not None and where != self._sentence:
                await self._end_sentence()
            self._sentence = where
            pcm = np.frombuffer(base64.b64decode(event["audio"]), dtype=np.int16)
            await self._audio(self._to_line(pcm, int(event["sample_rate"])))
        elif kind == "turn.done":
            await self._end_sentence()
        elif kind == "response.cancelled":
            await self._clear(event["turn_id"])
        elif kind == "error":
            log.warning(
                "%s call %s: %s: %s", self.carrier.name, self.carrier.stream_id, event["code"], event["message"]
            )

    async def _clear(self, turn_id: str) -> None:
        """Drop `turn_id`'s audio not sent yet and have the carrier drop what it buffered (its
        marks, echoed or not, no longer count as played)."""
        self._cancelled.add(turn_id)
        self._sentence, self._pending, self._resampler = None, bytearray(), None
        await self._send(self.carrier.clear())

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.end_reason = self.end_reason or "closed"
        await self.ws.close(code, reason)

    # audio out -----------------------------------------------------------------------------------
    def _to_line(self, pcm: np.ndarray, rate: int) -> bytes:
        line = self.carrier.sample_rate
        if rate != line:
            if self._resampler is None or self._resampler[0] != rate:
                self._resampler = (rate, soxr.ResampleStream(rate, line, 1, dtype="int16"))
            pcm = self._resampler[1].resample_chunk(pcm)
        data = np.ascontiguousarray(pcm, dtype=np.int16).tobytes()
        return audioop.lin2ulaw(data, 2) if self.carrier.encoding == "mulaw" else data

    async def _audio(self, data: bytes) -> None:
        self._pending += data
        c = self.carrier
        ready = len(self._pending) // c.frame_bytes * c.frame_bytes
        if ready and ready >= c.min_chunk_bytes:
            await self._flush(ready)

    async def _flush(self, n: int) -> None:
        chunk, self._pending = bytes(self._pending[:n]), self._pending[n:]
        self.audio_sent_s += len(chunk) / (self.carrier.sample_rate * (1 if self.carrier.encoding == "mulaw" else 2))
        await self._send(self.carrier.media(chunk))

    async def _end_sentence(self) -> None:
        """The sentence's last audio (padded with silence to the carrier's chunk rules), then its mark."""
        if self._sentence is None:
            return
        c = self.carrier
        if self._resampler is not None:  # the resampler's last few milliseconds belong to this sentence
            tail = self._resampler[1].resample_chunk(np.zeros(0, dtype=np.int16), last=True)
            self._resampler = None
            data = np.ascontiguousarray(tail, dtype=np.int16).tobytes()
            self._pending += audioop.lin2ulaw(data, 2) if c.encoding == "mulaw" else data
        if self._pending:
            silence = b"\xff" if c.encoding == "mulaw" else b"\x00"
            size = max(c.min_chunk_bytes, -(-len(self._pending) // c.frame_bytes) * c.frame_bytes)
            self._pending += silence * (size - len(self._pending))
            await self._flush(len(self._pending))
        turn, index = self._sentence
        self._sentence = None
        name = f"{turn}.{index}"
        self._marks[name] = None
        while len(self._marks) > MAX_MARKS:
            del self._marks[next(iter(self._marks))]
        await self._send(c.mark(name))

    async def _send(self, message: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(message))
