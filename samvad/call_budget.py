"""What one voice call may send, checked as each message is read (docs/security.md, "Budgets").

A socket is read as fast as its messages arrive, never paced by sleeping: behind Serve's direct
ingress the frames a call does not read pile up in a queue of Ray's with no bound, so a call that
runs ahead of real time is closed rather than slowed. Every message counts against a rate (pings,
`session.update`s and malformed JSON included: each costs a parse and often an answer); audio
frames shorter than `min_frame_ms` are refused (each frame costs the same fixed work, whatever
it carries); malformed messages are tolerated up to `max_bad_messages`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from samvad.settings import VoiceSettings


class OverBudget(Exception):
    """The call sent more than it may: close it with this reason (close code 4429)."""


@dataclass
class CallBudget:
    v: VoiceSettings
    opened: float = field(default_factory=time.monotonic)
    received_s: float = 0.0  # seconds of audio read so far
    lead_s: float = 0.0  # how far the audio read runs ahead of real time (a leaky bucket: no credit saved up)
    bad: int = 0
    _tokens: float = -1.0
    _at: float = 0.0
    _audio_at: float = field(default=-1.0)

    def __post_init__(self) -> None:
        if self._audio_at < 0:
            self._audio_at = self.opened

    def message(self, now: float | None = None) -> None:
        """One message read: a token from the socket's bucket (a burst of a second's worth)."""
        now = time.monotonic() if now is None else now
        rate = self.v.max_messages_per_s
        if self._tokens < 0:
            self._tokens, self._at = rate, now
        self._tokens = min(rate, self._tokens + (now - self._at) * rate)
        self._at = now
        if self._tokens < 1:
            raise OverBudget(f"more than {rate:g} messages a second")
        self._tokens -= 1

    def audio(self, seconds: float, now: float | None = None) -> bool:
        """A frame of `seconds` of audio read: False when it is too short to be taken (a bad
        message); raises once the call runs more than `audio_burst_s` ahead of real time."""
        if seconds * 1000 < self.v.min_frame_ms:
            self.malformed()
            return False
        now = time.monotonic() if now is None else now
        # Real time drains the lead, never below zero: a call silent (or sending only pings) for
        # minutes has not earned minutes of audio to push at once.
        self.lead_s = max(0.0, self.lead_s - (now - self._audio_at)) + seconds
        self._audio_at = now
        self.received_s += seconds
        if self.lead_s > self.v.audio_burst_s:
            raise OverBudget(f"audio more than {self.v.audio_burst_s:g} s ahead of real time")
        return True

    def malformed(self) -> None:
        """One malformed or unusable message; raises past `max_bad_messages`."""
        self.bad += 1
        if self.bad > self.v.max_bad_messages:
            raise OverBudget(f"more than {self.v.max_bad_messages} malformed messages")
