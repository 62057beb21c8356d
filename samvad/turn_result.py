"""A REST turn's answer: the turn's events collected into one JSON body. Built where the turn
runs (the session host), so that with an Idempotency-Key it is stored in the turn's own
transaction and a retry gets exactly the same answer."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel

from samvad.audio import wav_bytes
from samvad.contracts import LLMResponse, ProviderCall, Transcript
from samvad.errors import InputError, SamvadError
from samvad.events import AudioEvent, ErrorEvent, StageTiming, TranscriptEvent, TurnDoneEvent, TurnEvent


class AudioOut(BaseModel):
    format: Literal["wav"] = "wav"
    sample_rate: int
    seconds: float
    base64: str


class TurnOut(BaseModel):
    session_id: str
    turn_id: str
    outcome: str
    transcript: Transcript | None
    response: LLMResponse
    audio: AudioOut | None
    stages: dict[str, StageTiming]
    first_audio_ms: float | None
    cost: dict[str, float]
    flags: list[str]
    calls: list[ProviderCall]


def turn_out(session_id: str, turn_id: str, events: list[TurnEvent]) -> TurnOut:
    """The answer of a finished turn; a turn that ended without `turn.done` (refused input)
    raises its error, with its status."""
    done = next((e for e in events if isinstance(e, TurnDoneEvent)), None)
    error = next((e for e in events if isinstance(e, ErrorEvent)), None)
    if done is None:
        if error is not None:
            exc = (InputError if 400 <= error.status < 500 else SamvadError)(error.message, code=error.code)
            exc.status = error.status
            raise exc
        raise SamvadError("the turn ended without a result", code="turn_incomplete")
    chunks = [e for e in events if isinstance(e, AudioEvent)]
    audio = None
    if chunks:
        pcm = b"".join(c.audio for c in chunks)
        rate = chunks[0].sample_rate
        audio = AudioOut(
            sample_rate=rate,
            seconds=round(len(pcm) / 2 / rate, 3),
            base64=base64.b64encode(wav_bytes(pcm, rate)).decode("ascii"),
        )
    transcript = next((e.transcript for e in events if isinstance(e, TranscriptEvent)), None)
    return TurnOut(
        session_id=session_id,
        turn_id=turn_id,
        outcome=done.outcome,
        transcript=transcript,
        response=done.response,
        audio=audio,
        stages=done.stages,
        first_audio_ms=done.first_audio_ms,
        cost=done.cost,
        flags=done.flags + ([f"error:{error.code}"] if error else []),
        calls=done.calls,
    )


def stored_answer(out: TurnOut) -> str:
    """The answer as an Idempotency-Key keeps it for a retry (a day): never with its audio
    (flagged `audio_not_stored`: a retry gets the text and can ask /tts for the speech), so a
    client cannot fill the database with stored audio at its request rate."""
    if out.audio is None:
        return out.model_dump_json()
    return out.model_copy(update={"audio": None, "flags": [*out.flags, "audio_not_stored"]}).model_dump_json()
