"""Sarvam's realtime speech-to-text socket (`/speech-to-text-realtime/ws`, providers.md §11): the
caller's speech is streamed while it is spoken, word-level partial transcripts come back as it
goes, and the final transcript follows the end of speech at once, with no second upload.

One socket per utterance, with `endpointing=manual`: Samvad's own VAD already decides where an
utterance starts and ends (and barge-in depends on it), so the socket is told `speech_start`,
the audio, `speech_end`, and then `end`. A socket per utterance rather than per call: nothing is
held open (and timed out for inactivity) while the answer plays, and a broken socket costs one
utterance, which then falls back to the REST recogniser.

Billing is per second of audio sent (§1.2). The call record counts the audio this client sent;
`session.end` reports the billed amount after the final, and a mismatch is logged."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import urllib.parse
from typing import Any

import numpy as np
import websockets

from samvad.audio import float_to_pcm16
from samvad.contracts import Transcript, Usage
from samvad.errors import ProviderError
from samvad.providers.base import CallLog, OnPartial, RealtimeSpeechToText, SpeechStream
from samvad.providers.sarvam.common import socket_url
from samvad.providers.sarvam.config import SarvamSettings

log = logging.getLogger(__name__)

RATE = 16000
END_WAIT_S = 2.0  # after `end`, how long session.end (the billed amount) is waited for, off the turn path
# How long the final may take after speech_end. The service has heard the utterance as it was
# spoken, so a final comes in well under a second; a socket that hangs costs the caller this
# long before the utterance goes to the REST recogniser instead (the call's frames wait too).
FINAL_WAIT_S = 3.0
# This socket spells Odia `or-IN`; everywhere else Samvad (and Sarvam) says `od-IN`.
_TO_SOCKET = {"od-IN": "or-IN"}
_FROM_SOCKET = {v: k for k, v in _TO_SOCKET.items()}


class SarvamRealtimeSTT(RealtimeSpeechToText):
    name = "sarvam"

    def __init__(self, settings: SarvamSettings) -> None:
        super().__init__(model=settings.realtime_stt_model)
        self._s = settings
        self._url = socket_url(settings, "/speech-to-text-realtime/ws")

    def url(self, language: str | None) -> str:
        query = {
            "language_code": _TO_SOCKET.get(language, language) if language else "auto",
            "model": self.model,
            "stream_type": self._s.realtime_stream_type,
            "mode": self._s.stt_mode,
            "endpointing": "manual",
            "encoding": "linear16",
            "sample_rate": str(RATE),
        }
        return f"{self._url}?{urllib.parse.urlencode(query)}"

    def open(self, language: str | None, on_partial: OnPartial) -> SpeechStream:
        return _Stream(self, language, on_partial)

    def error(
        self, message: str, *, status: int | None = None, retryable: bool = True, code: str = "stream_error"
    ) -> ProviderError:
        return ProviderError(
            f"sarvam realtime asr: {message}",
            provider="sarvam",
            stage="asr",
            status=status,
            retryable=retryable,
            code=code,
        )


class _Stream(SpeechStream):
    def __init__(self, stt: SarvamRealtimeSTT, language: str | None, on_partial: OnPartial) -> None:
        self._stt, self._language, self._on_partial = stt, language, on_partial
        self._started = time.perf_counter()
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._final: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._sent_samples = 0
        self._first_output: float | None = None
        self._put({"event": "speech_start"})
        self._task = asyncio.create_task(self._run())

    def _put(self, message: dict[str, Any]) -> None:
        self._outbox.put_nowait(json.dumps(message))

    def send(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32)
        if len(samples) and not self._final.done():
            self._sent_samples += len(samples)
            self._put({"event": "audio_input", "audio": base64.b64encode(float_to_pcm16(samples)).decode()})

    async def finish(self, calls: CallLog) -> Transcript:
        with self._stt._track(calls) as rec:
            rec.started = self._started
            rec.usage = Usage(audio_seconds=self._sent_samples / RATE)
            self._put({"event": "speech_end"})
            try:
                final = await asyncio.wait_for(asyncio.shield(self._final), min(FINAL_WAIT_S, self._stt._s.timeout_s))
            except TimeoutError:
                await self.close()
                raise self._stt.error("no final transcript in time") from None
            rec.first_output = self._first_output
            rec.mark_first_output()
        self._put({"event": "end"})
        self._outbox.put_nowait(None)  # the writer stops; the reader waits for session.end
        return _transcript(final, self._language)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        if not self._final.done():
            self._final.set_exception(self._stt.error("stream closed"))
            self._final.exception()  # retrieved: nobody may be waiting for it

    async def _run(self) -> None:
        s = self._stt._s
        key = s.api_key.get_secret_value() if s.api_key else ""
        try:
            async with websockets.connect(
                self._stt.url(self._language),
                open_timeout=s.connect_timeout_s,
                additional_headers={"Api-Subscription-Key": key},
            ) as ws:
                writer = asyncio.create_task(self._write(ws))
                try:
                    await self._read(ws)
                finally:
                    writer.cancel()
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            self._fail(self._stt.error(f"handshake refused ({status})", status=status, retryable=status >= 500))
        except websockets.ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            self._fail(
                self._stt.error(
                    f"socket closed ({code}: {exc.rcvd.reason if exc.rcvd else ''})", retryable=code not in (1003, 4000)
                )
            )
        except (OSError, TimeoutError) as exc:
            self._fail(self._stt.error(type(exc).__name__))
        finally:
            if not self._final.done():
                self._fail(self._stt.error("socket ended before the final transcript"))

    async def _write(self, ws: Any) -> None:
        while (message := await self._outbox.get()) is not None:
            await ws.send(message)

    async def _read(self, ws: Any) -> None:
        async def recv() -> dict[str, Any]:
            # Before the final: the turn waits on it (bounded in `finish`). After: session.end
            # is only bookkeeping, so the wait for it is short.
            timeout = None if not self._final.done() else END_WAIT_S
            message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            return message

        while True:
            try:
                msg = await recv()
            except TimeoutError:
                return
            event = msg.get("event")
            if event == "transcript.partial" and not self._final.done():
                self._first_output = self._first_output or time.perf_counter()
                text = (msg.get("text") or "").strip()
                if text:
                    await self._on_partial(_transcript(msg, self._language))
            elif event == "transcript.final" and not self._final.done():
                self._final.set_result(msg)
            elif event == "error" and msg.get("is_fatal", True):
                self._fail(
                    self._stt.error(
                        str(msg.get("message") or msg.get("code")),
                        status=msg.get("status_code"),
                        retryable=False,
                        code=str(msg.get("code") or "stream_error"),
                    )
                )
                return
            elif event == "error":
                log.warning("sarvam realtime asr: %s", msg.get("message"))
            elif event == "session.end":
                billed = float(msg.get("audio_duration_s") or 0.0)
                if abs(billed - self._sent_samples / RATE) > 0.05:
                    log.warning("sarvam realtime asr billed %.2f s for %.2f s sent", billed, self._sent_samples / RATE)
                return

    def _fail(self, exc: ProviderError) -> None:
        if not self._final.done():
            self._final.set_exception(exc)
            self._final.exception()  # retrieved here: `finish` may never be called


def _transcript(msg: dict[str, Any], asked: str | None) -> Transcript:
    language = msg.get("language") or asked or "en-IN"
    confidence = msg.get("language_confidence")
    return Transcript(
        text=(msg.get("text") or "").strip(),
        language_code=_FROM_SOCKET.get(language, language),
        confidence=1.0,
        language_confidence=None if asked or confidence is None else max(0.0, min(1.0, float(confidence))),
    )
