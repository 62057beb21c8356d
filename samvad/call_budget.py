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
    bad: int = 0
    _tokens: float = -1.0
    _at: float = 0.0

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
        self.received_s += seconds
        if self.received_s - (now - self.opened) > self.v.audio_burst_s:
            raise OverBudget(f"audio more than {self.v.audio_burst_s:g} s ahead of real time")
        return True

    def malformed(self) -> None:
        """One malformed or unusable message; raises past `max_bad_messages`."""
        self.bad += 1
        if self.bad > self.v.max_bad_messages:
            raise OverBudget(f"more than {self.v.max_bad_messages} malformed messages")
