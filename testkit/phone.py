"""A telephony carrier's side of a media stream, as each publishes it (Twilio Media Streams,
Exotel's Voicebot applet, Plivo Audio Streams): it opens the stream with the carrier's own
messages, sends the caller's audio in real time in the carrier's encoding and framing, plays
what it is sent on a clock (echoing each mark once the audio before it has played, as the
carrier does), obeys clear, and hangs up. Every message it receives is checked against the
carrier's schema, so a test fails if Samvad sends anything the carrier would reject.

Used with Starlette's TestClient (`websocket_connect`) or any object with the same
`send_text` / `receive_text` / `close` methods."""

from __future__ import annotations

import audioop
import base64
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RATE = 8000


@dataclass
class Carrier:
    name: str  # twilio | exotel | plivo
    ws: Any = None
    caller: str = "+919876543210"
    called: str = "+918000000001"
    call_id: str = field(default_factory=lambda: "CA" + uuid.uuid4().hex)
    stream_id: str = field(default_factory=lambda: "MZ" + uuid.uuid4().hex)
    played: list[str] = field(default_factory=list)  # marks echoed (their audio played)
    cleared: int = 0
    audio_s: float = 0.0  # of answer audio received
    first_audio_at: float | None = None
    errors: list[str] = field(default_factory=list)  # messages the carrier would reject

    def __post_init__(self) -> None:
        self._seq = 0
        self._queue: list[tuple[float, str]] = []  # (due, mark) in the playback buffer
        self._clock = 0.0  # when the buffered audio ends playing
        self._lock = threading.Lock()
        self._sending = threading.Lock()
        self._stop = threading.Event()
        self._inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._speech = bytearray()  # the caller's audio not yet on the line
        self._listener = threading.Thread(target=self._listen, daemon=True)
        self._player = threading.Thread(target=self._play, daemon=True)
        self._line = threading.Thread(target=self._mic, daemon=True)

    @property
    def encoding(self) -> str:
        return "pcm16" if self.name == "exotel" else "mulaw"

    # the call ------------------------------------------------------------------------------
    def connect(self, params: dict[str, str], *, listen: bool = True) -> None:
        """The carrier's opening messages; `params` are the stream's custom parameters. With
        `listen`, the carrier then plays what it is sent (in threads of its own)."""
        for message in self.opening(params):
            self._send(message)
        if listen:
            self._listener.start()
            self._player.start()
            self._line.start()

    def opening(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """The messages that open the stream (connected, where the carrier sends one, and start)."""
        self._seq += 1
        if self.name == "twilio":
            return [
                {"event": "connected", "protocol": "Call", "version": "1.0.0"},
                {
                    "event": "start",
                    "sequenceNumber": str(self._seq),
                    "streamSid": self.stream_id,
                    "start": {
                        "streamSid": self.stream_id,
                        "accountSid": "AC" + "0" * 32,
                        "callSid": self.call_id,
                        "tracks": ["inbound"],
                        "customParameters": params,
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    },
                },
            ]
        if self.name == "exotel":
            return [
                {"event": "connected"},
                {
                    "event": "start",
                    "sequence_number": self._seq,
                    "stream_sid": self.stream_id,
                    "start": {
                        "stream_sid": self.stream_id,
                        "call_sid": self.call_id,
                        "account_sid": "samvadtest",
                        "from": "0" + self.caller[3:],  # Exotel's national form
                        "to": "0" + self.called[3:],
                        "custom_parameters": params,
                        "media_format": {"encoding": "base64", "sample_rate": "8000", "bit_rate": "128kbps"},
                    },
                },
            ]
        return [
            {
                "event": "start",
                "sequenceNumber": self._seq,
                "start": {
                    "callId": self.call_id,
                    "streamId": self.stream_id,
                    "accountId": "MA" + "0" * 18,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
                },
                "extra_headers": ",".join(f"{k}={v}" for k, v in params.items()),
            }
        ]

    @property
    def frame_bytes(self) -> int:
        """PCM16 bytes per media message: 20 ms (Exotel: 100 ms)."""
        return 1600 if self.name == "exotel" else 320

    def speak(self, pcm16_8k: bytes) -> None:
        """The caller says this (the line carries it at real time); returns once it is said."""
        with self._lock:
            self._speech += pcm16_8k
        self.wait_for(lambda: not self._speech, timeout=len(pcm16_8k) / 2 / RATE + 10)

    def _mic(self) -> None:
        """The line: a frame every 20 ms (Exotel: 100 ms) of the caller's speech, else silence, as
        a phone line streams whether anyone speaks or not."""
        frame = self.frame_bytes
        start, n = time.monotonic(), 0
        while not self._stop.is_set():
            with self._lock:
                chunk, self._speech = bytes(self._speech[:frame]), self._speech[frame:]
            chunk = chunk.ljust(frame, b"\x00")
            try:
                self._send(self.media_message(chunk, n))
            except Exception:  # noqa: BLE001 - the service closed the stream
                self._stop.set()
                return
            n += 1
            time.sleep(max(0.0, start + n * frame / 2 / RATE - time.monotonic()))

    def dtmf(self, digit: str) -> None:
        self._seq += 1
        body = (
            {"digit": digit, "track": "inbound_track"} if self.name != "exotel" else {"digit": digit, "duration": "250"}
        )
        self._send({"event": "dtmf", **self._ids(), "dtmf": body})

    def hang_up(self) -> None:
        """Twilio and Exotel say stop; Plivo just closes the socket."""
        self._seq += 1
        if self.name == "twilio":
            self._send(
                {"event": "stop", **self._ids(), "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_id}}
            )
        elif self.name == "exotel":
            self._send({"event": "stop", **self._ids(), "stop": {"call_sid": self.call_id, "reason": "callended"}})
        self._stop.set()
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - already closed by the service
            pass

    def wait_for(self, what: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: waited {timeout} s (played {self.played}, cleared {self.cleared})")
            time.sleep(0.02)

    # the carrier's side ---------------------------------------------------------------------
    def _ids(self) -> dict[str, Any]:
        if self.name == "twilio":
            return {"sequenceNumber": str(self._seq), "streamSid": self.stream_id}
        if self.name == "exotel":
            return {"sequence_number": self._seq, "stream_sid": self.stream_id}
        return {"sequenceNumber": self._seq, "streamId": self.stream_id}

    def media_message(self, pcm16_8k: bytes, chunk: int) -> dict[str, Any]:
        """One media message of the caller's audio, encoded as the carrier sends it."""
        self._seq += 1
        payload = pcm16_8k if self.encoding == "pcm16" else audioop.lin2ulaw(pcm16_8k, 2)
        b64 = base64.b64encode(payload).decode()
        stamp = str(chunk * self.frame_bytes // 16)
        if self.name == "twilio":
            media = {"track": "inbound", "chunk": str(chunk + 1), "timestamp": stamp, "payload": b64}
        elif self.name == "exotel":
            media = {"chunk": chunk + 1, "timestamp": stamp, "payload": b64}
        else:
            media = {"track": "inbound", "timestamp": stamp, "chunk": chunk + 1, "payload": b64}
        return {"event": "media", **self._ids(), "media": media}

    def _send(self, message: dict[str, Any]) -> None:
        if not self._stop.is_set():
            with self._sending:  # the line, the player and the test share one socket
                self.ws.send_text(json.dumps(message))

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                message = json.loads(self.ws.receive_text())
            except Exception:  # noqa: BLE001 - the service closed the stream
                self._stop.set()
                return
            self._receive(message)

    def _receive(self, m: dict[str, Any]) -> None:
        """Samvad's messages, checked as the carrier checks them."""
        event = m.get("event")
        sid_key = {"twilio": "streamSid", "exotel": "stream_sid", "plivo": "streamId"}[self.name]
        audio_event, mark_event, clear_event = {
            "twilio": ("media", "mark", "clear"),
            "exotel": ("media", "mark", "clear"),
            "plivo": ("playAudio", "checkpoint", "clearAudio"),
        }[self.name]
        if event != audio_event and m.get(sid_key) != self.stream_id:
            self.errors.append(f"{event}: {sid_key} is {m.get(sid_key)!r}")
        if event == audio_event:
            media = m.get("media", {})
            if self.name == "plivo" and (media.get("contentType"), media.get("sampleRate")) != ("audio/x-mulaw", 8000):
                self.errors.append(f"playAudio format {media.get('contentType')} {media.get('sampleRate')}")
            if self.name != "plivo" and m.get(sid_key) != self.stream_id:
                self.errors.append(f"media for stream {m.get(sid_key)!r}")
            audio = base64.b64decode(media["payload"])
            if self.name == "exotel" and (len(audio) % 320 or not 3200 <= len(audio) <= 100_000):
                self.errors.append(f"exotel media of {len(audio)} bytes (multiples of 320, 3.2-100 KB)")
            seconds = len(audio) / (2 if self.encoding == "pcm16" else 1) / RATE
            with self._lock:
                now = time.monotonic()
                self.first_audio_at = self.first_audio_at or now
                self._clock = max(self._clock, now) + seconds
                self.audio_s += seconds
        elif event == mark_event:
            name = m["mark"]["name"] if self.name != "plivo" else m["name"]
            with self._lock:
                self._queue.append((max(self._clock, time.monotonic()), name))
        elif event == clear_event:
            with self._lock:
                dropped = [name for _, name in self._queue]
                self._queue.clear()
                self._clock = time.monotonic()
                self.cleared += 1
            if self.name == "twilio":  # Twilio answers a clear with the marks it dropped
                for name in dropped:
                    self._seq += 1
                    self._send({"event": "mark", **self._ids(), "mark": {"name": name}})
            elif self.name == "plivo":
                self._send({"event": "clearedAudio", **self._ids()})
        else:
            self.errors.append(f"unknown event {event!r}")

    def _play(self) -> None:
        """Echo each mark once the audio before it has played."""
        while not self._stop.is_set():
            with self._lock:
                due = [name for at, name in self._queue if at <= time.monotonic()]
                self._queue = [(at, name) for at, name in self._queue if at > time.monotonic()]
            for name in due:
                self._seq += 1
                # Echoed before it counts as played here: a test that hangs up on seeing it
                # played has sent the echo first, as the carrier would have.
                if self.name == "plivo":
                    self._send({"event": "playedStream", "streamId": self.stream_id, "name": name})
                else:
                    self._send({"event": "mark", **self._ids(), "mark": {"name": name}})
                self.played.append(name)
            time.sleep(0.01)


def to_8k(pcm16: bytes, rate: int) -> bytes:
    """PCM16 at `rate` as 8 kHz PCM16 (what a phone line carries)."""
    import soxr

    samples = np.frombuffer(pcm16, dtype=np.int16)
    return np.asarray(soxr.resample(samples, rate, RATE), dtype=np.int16).tobytes()
