"""The voice call's state machine (samvad/voice.py) with a fake socket, a scripted VAD and
scripted turns: endpointing, the answer paced out, barge-in, backchannels, hang-up. No servers,
no models."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from samvad.contracts import LLMResponse, Transcript
from samvad.events import AudioEvent, ResponseDeltaEvent, TurnDoneEvent
from samvad.protocol import SessionStart
from samvad.providers.local.vad import Endpointer, SileroVad
from samvad.voice import CallState, VoiceCall

pytestmark = pytest.mark.unit

RATE = 16000
FRAME = 1600  # 100 ms frames, as the demo page sends


class FakeSocket:
    """What VoiceCall uses of a Starlette WebSocket: messages in from a queue, events out to a list."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sent: list[dict] = []
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> dict:
        return await self.inbox.get()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": code})

    def say(self, seconds: float, silence_after: float = 0.0) -> None:
        """Loud frames (speech to the scripted VAD), then digital silence."""
        speech = np.full(int(seconds * RATE), 3000, dtype=np.int16)
        quiet = np.zeros(int(silence_after * RATE), dtype=np.int16)
        pcm = np.concatenate([speech, quiet]).tobytes()
        for i in range(0, len(pcm), FRAME * 2):
            self.inbox.put_nowait({"type": "websocket.receive", "bytes": pcm[i : i + FRAME * 2]})

    def hang_up(self) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})

    def types(self) -> list[str]:
        return [e["type"] for e in self.sent]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> dict:
        async def seen() -> dict:
            while sum(1 for e in self.sent if e["type"] == kind) < count:
                await asyncio.sleep(0.01)
            return [e for e in self.sent if e["type"] == kind][count - 1]

        return await asyncio.wait_for(seen(), timeout)


class LoudIsSpeech(SileroVad):
    """A VAD that calls loud frames speech: the endpointing logic without the model."""

    def __init__(self) -> None:
        self.sample_rate, self.frame_samples = RATE, 512

    def probability(self, frame: np.ndarray) -> float:
        return 0.95 if float(np.abs(frame).mean()) > 0.05 else 0.0

    def reset(self) -> None:
        pass


class Script:
    """Scripted turns: each answer is `sentences`, one second of audio per sentence; a short
    utterance the call transcribes itself reads `heard_as`; the calls are recorded."""

    def __init__(self, sentences: list[str], heard_as: str = "please block my card") -> None:
        self.sentences, self.heard_as = sentences, heard_as
        self.requests: list = []
        self.settled: list[tuple[str, str, bool]] = []
        self.transcribed: list[float] = []

    async def start_turn(self, request):
        self.requests.append(request)
        for i, text in enumerate(self.sentences):
            yield ResponseDeltaEvent(
                turn_id=request.turn_id, index=i, text=text, language_code="en-IN", source_text=text
            )
            yield AudioEvent(turn_id=request.turn_id, index=i, seq=0, sample_rate=RATE, audio=b"\x01\x00" * RATE)
        yield TurnDoneEvent(
            turn_id=request.turn_id,
            response=LLMResponse(response_text=" ".join(self.sentences)),
            language_code="en-IN",
        )

    async def settle(self, turn_id: str, heard: str, complete: bool) -> None:
        self.settled.append((turn_id, heard, complete))

    async def transcribe(self, audio, language):
        self.transcribed.append(len(audio.samples) / RATE)
        return Transcript(text=self.heard_as, language_code="en-IN", confidence=0.9), []


@pytest.fixture
def voice_settings(settings):
    # No early or partial ASR (their own tests cover them), and audio read as fast as it comes.
    voice = settings.voice.model_copy(
        update={"early_asr_ms": 0, "partial_interval_ms": 0, "audio_burst_s": 600.0, "max_messages_per_s": 1e9}
    )
    return settings.model_copy(update={"voice": voice})


def _call(ws: FakeSocket, s, script: Script) -> VoiceCall:
    call = VoiceCall(
        ws,
        s,
        CallState(language="en-IN", mode="formal"),
        SessionStart(type="session.start"),
        start_turn=script.start_turn,
        settle=script.settle,
        transcribe=script.transcribe,
    )
    call.vad = Endpointer(LoudIsSpeech(), s.vad, max_seconds=s.audio.max_seconds)
    return call


async def test_speech_then_silence_is_one_turn_answered_and_recorded_as_heard(voice_settings):
    ws, script = FakeSocket(), Script(["Your card is blocked.", "Anything else?"])
    call = _call(ws, voice_settings, script)
    runner = asyncio.create_task(call.run())
    ws.say(1.0, silence_after=1.0)
    done = await ws.wait_for("turn.done")
    assert ws.types()[:2] == ["vad.speech_start", "vad.speech_end"]
    assert len(script.requests) == 1 and script.requests[0].audio  # the utterance goes to the turn
    assert done["turn_id"] == script.requests[0].turn_id
    assert [e["index"] for e in ws.sent if e["type"] == "audio"] == [0, 1]
    assert script.settled == [(done["turn_id"], "Your card is blocked. Anything else?", True)]
    ws.hang_up()
    await asyncio.wait_for(runner, 5)
    assert script.settled[-1][2] is True  # a later hang-up does not rewrite a finished answer


async def test_barge_in_cuts_the_answer_and_keeps_what_was_heard(voice_settings):
    ws, script = FakeSocket(), Script(["One.", "Two.", "Three.", "Four."])
    call = _call(ws, voice_settings, script)
    runner = asyncio.create_task(call.run())
    ws.say(0.6, silence_after=0.8)
    await ws.wait_for("audio", 2)  # the first sentence is out, the second going
    first_turn = script.requests[0].turn_id
    ws.say(1.0, silence_after=0.8)  # the caller talks over the answer
    cancelled = await ws.wait_for("response.cancelled")
    assert cancelled["turn_id"] == first_turn and cancelled["reason"] == "barge_in"
    heard = cancelled["heard_text"]
    assert heard.startswith("One.") and "Four." not in heard
    assert (first_turn, heard, False) in script.settled  # stored as what the caller heard
    await ws.wait_for("turn.done")  # the interruption is the next question, answered
    assert len(script.requests) == 2
    ws.hang_up()
    await asyncio.wait_for(runner, 5)


async def test_a_backchannel_during_the_answer_does_not_interrupt_it(voice_settings):
    ws, script = FakeSocket(), Script(["One.", "Two.", "Three."], heard_as="haan")
    call = _call(ws, voice_settings, script)
    runner = asyncio.create_task(call.run())
    ws.say(0.6, silence_after=0.8)
    await ws.wait_for("audio")
    ws.say(0.3, silence_after=0.8)  # "haan": long enough to transcribe, too short to barge in
    backchannel = await ws.wait_for("vad.backchannel")
    assert backchannel["text"] == "haan"
    done = await ws.wait_for("turn.done")
    assert "response.cancelled" not in ws.types() and len(script.requests) == 1
    assert len(script.transcribed) == 1 and script.transcribed[0] < 1.0  # only the short utterance
    assert script.settled == [(done["turn_id"], "One. Two. Three.", True)]
    ws.hang_up()
    await asyncio.wait_for(runner, 5)


async def test_hanging_up_mid_answer_records_only_what_was_sent(voice_settings):
    ws, script = FakeSocket(), Script(["One.", "Two.", "Three.", "Four."])
    call = _call(ws, voice_settings, script)
    runner = asyncio.create_task(call.run())
    ws.say(0.6, silence_after=0.8)
    await ws.wait_for("audio", 2)
    ws.hang_up()
    await asyncio.wait_for(runner, 5)
    (turn_id, heard, complete), *_ = script.settled
    assert turn_id == script.requests[0].turn_id and complete is False
    assert heard.startswith("One.") and "Four." not in heard
    assert "turn.done" not in ws.types()


async def test_a_bad_frame_is_answered_and_the_call_goes_on(voice_settings):
    ws, script = FakeSocket(), Script(["Fine."])
    runner = asyncio.create_task(_call(ws, voice_settings, script).run())
    ws.inbox.put_nowait({"type": "websocket.receive", "bytes": b"\x01\x02\x03"})  # odd length: not PCM16
    ws.inbox.put_nowait({"type": "websocket.receive", "text": "{not json"})
    error = await ws.wait_for("error", 2)
    assert [e["code"] for e in ws.sent if e["type"] == "error"] == ["bad_frame", "invalid_json"] and error
    ws.say(0.6, silence_after=0.8)
    await ws.wait_for("turn.done")
    ws.hang_up()
    await asyncio.wait_for(runner, 5)


async def test_a_short_stop_during_the_answer_interrupts_it(voice_settings):
    ws, script = FakeSocket(), Script(["One.", "Two.", "Three.", "Four."], heard_as="stop")
    runner = asyncio.create_task(_call(ws, voice_settings, script).run())
    ws.say(0.6, silence_after=0.8)
    await ws.wait_for("audio")
    ws.say(0.3, silence_after=0.8)  # as short as a backchannel, but the word asks to stop
    cancelled = await ws.wait_for("response.cancelled")
    assert cancelled["reason"] == "barge_in" and "vad.backchannel" not in ws.types()
    ws.hang_up()
    await asyncio.wait_for(runner, 5)


class LineThatDrops(FakeSocket):
    """A phone line (its carrier reports what it played) that goes dead while the answer is
    still going out: sends fail from then on, and its hang-up is read only afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.played: dict[str, set[int]] = {}
        self.dead = asyncio.Event()

    async def send_text(self, text: str) -> None:
        if self.dead.is_set():
            raise RuntimeError("the line is closed")
        await super().send_text(text)


async def test_a_line_that_drops_mid_answer_keeps_what_it_played(voice_settings):
    ws, script = LineThatDrops(), Script(["One.", "Two.", "Three.", "Four."])
    call = _call(ws, voice_settings, script)
    call._played = lambda turn_id: ws.played.get(turn_id, set())
    runner = asyncio.create_task(call.run())
    ws.say(0.6, silence_after=0.8)
    third = await ws.wait_for("audio", 3)  # two sentences sent, the third going out
    turn_id = third["turn_id"]
    ws.dead.set()  # the caller hung up: the next send fails before the hang-up is read
    while not script.settled:
        await asyncio.sleep(0.01)
    assert script.settled == [(turn_id, "", False)]  # sent is not heard on a phone line: no mark yet
    ws.played[turn_id] = {0}  # the carrier's mark for the first sentence, read after the failure
    ws.hang_up()
    await asyncio.wait_for(runner, 5)
    assert script.settled[-1] == (turn_id, "One.", False)


async def test_the_answer_is_delivered_while_the_database_is_away_and_recorded_at_the_end(voice_settings):
    ws, script = FakeSocket(), Script(["Your card is blocked."])
    failures = [RuntimeError("the database is away")]
    record = script.settle

    async def settle(turn_id, heard, complete):
        if failures:
            raise failures.pop()
        await record(turn_id, heard, complete)

    script.settle = settle
    runner = asyncio.create_task(_call(ws, voice_settings, script).run())
    ws.say(0.6, silence_after=0.8)
    done = await ws.wait_for("turn.done")  # the caller is not kept waiting on the record
    assert "error" not in ws.types() and script.settled == []
    ws.hang_up()
    await asyncio.wait_for(runner, 5)
    assert script.settled == [(done["turn_id"], "Your card is blocked.", True)]


async def test_what_was_heard_is_recorded_though_the_server_cancels_the_call_as_it_drops(voice_settings):
    """Serve cancels a WebSocket's handler when the client's disconnect arrives, while the call
    is recording what was heard: the record still completes."""
    ws, script = FakeSocket(), Script(["One.", "Two.", "Three.", "Four."])
    recording = asyncio.Event()
    record = script.settle

    async def slow_settle(turn_id, heard, complete):
        recording.set()
        await asyncio.sleep(0.2)  # the database round trip
        await record(turn_id, heard, complete)

    script.settle = slow_settle
    runner = asyncio.create_task(_call(ws, voice_settings, script).run())
    ws.say(0.6, silence_after=0.8)
    await ws.wait_for("audio", 2)
    ws.hang_up()
    await asyncio.wait_for(recording.wait(), 5)
    runner.cancel()  # the server, as the line drops
    with pytest.raises(asyncio.CancelledError):
        await runner
    (turn_id, heard, complete), *_ = script.settled
    assert turn_id == script.requests[0].turn_id and heard.startswith("One.") and complete is False
