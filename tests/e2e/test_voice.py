"""The WebSocket voice session through the real Serve graph with a real `websockets` client."""

import asyncio
import base64
import json
import uuid

import httpx
import numpy as np
import pytest
import websockets

from samvad.audio import decode_audio, float_to_pcm16
from samvad.providers.local.espeak import EspeakTTS
from samvad.settings import load_settings
from testkit.speech import speak_wav, wer
from tests.e2e.helpers import metric_lines
from tests.graph import PORT

pytestmark = pytest.mark.e2e
URL = f"ws://127.0.0.1:{PORT}/api/v1/voice-session"


@pytest.fixture(scope="module")
def tts():
    s = load_settings()
    return EspeakTTS(s.tts.espeak, s.languages)


def pcm16k(tts, text: str, language: str = "en-IN", lead: float = 0.3, tail: float = 1.0) -> bytes:
    audio = decode_audio(
        speak_wav(tts, text, language, lead_silence=lead, tail_silence=tail), target_rate=16000, max_seconds=60
    )
    return float_to_pcm16(audio.samples)


async def stream_realtime(ws, pcm: bytes, frame_ms: int = 20) -> None:
    step = 16 * frame_ms * 2
    for i in range(0, len(pcm), step):
        await ws.send(pcm[i : i + step])
        await asyncio.sleep(frame_ms / 1000)


async def recv(ws, timeout=30.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws, kind: str, seen: list, timeout=60.0):
    while True:
        ev = await recv(ws, timeout)
        seen.append(ev)
        if ev["type"] == kind:
            return ev


async def open_session(api_key, **start):
    ws = await websockets.connect(
        URL + "?" + "&".join(f"{k}={v}" for k, v in start.pop("query", {}).items()),
        additional_headers={"X-API-Key": api_key},
        max_size=None,
    )
    await ws.send(json.dumps({"type": "session.start", "language": "en-IN", **start}))
    started = await recv(ws)
    assert started["type"] == "session.started", started
    return ws, started


async def ask_aloud(api_key, pcm: bytes) -> tuple[dict, list[dict]]:
    """One spoken question in a new session, streamed in real time: (session.started, every
    event up to its turn.done)."""
    ws, started = await open_session(api_key)
    await stream_realtime(ws, pcm)
    seen = []
    await until(ws, "turn.done", seen)
    await ws.close()
    return started, seen


async def test_spoken_question_in_real_time_gives_ordered_events_and_audio(api_key, tts, db):
    question = "How can I block my stolen debit card?"
    started, seen = await ask_aloud(api_key, pcm16k(tts, question))
    types = [e["type"] + (".partial" if e.get("final") is False else "") for e in seen]
    order = ["vad.speech_start", "vad.speech_end", "transcript", "retrieval", "response.delta", "audio", "turn.done"]
    # Early ASR showed a partial transcript first, with the id of the turn it became.
    partials = [e for e in seen if e["type"] == "transcript" and e["final"] is False]
    assert partials and partials[0]["turn_id"] == seen[-1]["turn_id"]
    assert types.index("transcript.partial") < types.index("transcript")
    assert [t for t in types if t in order and (types.index(t) == types.index(t))] and all(
        types.index(a) < types.index(b) for a, b in zip(order, order[1:], strict=False)
    ), types
    transcript = next(e for e in seen if e["type"] == "transcript" and e["final"])["transcript"]["text"]
    assert wer(question, transcript) <= 0.25
    pcm = b"".join(base64.b64decode(e["audio"]) for e in seen if e["type"] == "audio")
    assert np.abs(np.frombuffer(pcm, dtype="<i2")).max() > 1000
    assert all(e["turn_id"] == seen[-1]["turn_id"] for e in seen if e["type"] in ("audio", "response.delta"))
    rows = db("SELECT role, status FROM messages WHERE session_id = $1 ORDER BY id", uuid.UUID(started["session_id"]))
    assert [(r["role"], r["status"]) for r in rows] == [("user", "complete"), ("assistant", "complete")]
    # The question was transcribed early (during the endpointing silence) by the ingress; the
    # ASR call still rides with the turn, so its cost and timing are recorded.
    done = seen[-1]
    assert [c["provider"] for c in done["calls"] if c["stage"] == "asr"] == ["whisper"]
    calls = db(
        "SELECT stage, audio_seconds FROM provider_calls WHERE session_id = $1 AND stage = 'asr'",
        uuid.UUID(started["session_id"]),
    )
    assert len(calls) == 1 and calls[0]["audio_seconds"] > 1
    with httpx.Client(base_url=f"http://127.0.0.1:{PORT}") as client:
        assert metric_lines(client, "ray_samvad_early_asr_total", 'result="used"')


async def test_partial_transcripts_arrive_while_the_caller_speaks(api_key, tts, db):
    """Word by word: a long question shows partial transcripts before its end is detected, each
    with the id of the turn it becomes; they cost no billed ASR call."""
    question = "I would like to know how I can block my lost debit card and order a new one quickly"
    started, seen = await ask_aloud(api_key, pcm16k(tts, question))
    end = next(i for i, e in enumerate(seen) if e["type"] == "vad.speech_end")
    during = [e for e in seen[:end] if e["type"] == "transcript" and e["final"] is False]
    assert during, [e["type"] for e in seen]
    assert all(e["turn_id"] == seen[-1]["turn_id"] for e in during)
    assert len(during[-1]["transcript"]["text"].split()) >= 4, during  # words so far, not a fragment
    final = next(e for e in seen if e["type"] == "transcript" and e["final"])["transcript"]["text"]
    assert wer(question, final) <= 0.25
    calls = db(
        "SELECT count(*) AS n FROM provider_calls WHERE session_id = $1 AND stage = 'asr'",
        uuid.UUID(started["session_id"]),
    )
    assert calls[0]["n"] == 1  # the turn's own transcription only


async def test_barge_in_interrupts_and_keeps_only_what_was_sent(api_key, tts, db):
    ws, started = await open_session(api_key)
    await ws.send(
        json.dumps({"type": "text.input", "text": "What happens if I do not keep the minimum balance in my account?"})
    )
    seen = []
    await until(ws, "audio", seen)  # the answer has started playing
    second = pcm16k(tts, "What are the branch working hours on Saturday?", lead=0.1)
    await stream_realtime(ws, second)
    cancelled = await until(ws, "response.cancelled", seen)
    first_turn = cancelled["turn_id"]
    assert cancelled["reason"] == "barge_in"
    await until(ws, "turn.done", seen)  # the second question is answered
    await ws.close()
    full = " ".join(e["text"] for e in seen if e["type"] == "response.delta" and e["turn_id"] == first_turn)
    (row,) = db(
        "SELECT content, status FROM messages WHERE session_id = $1 AND turn_id = $2 AND role = 'assistant'",
        uuid.UUID(started["session_id"]),
        first_turn,
    )
    assert row["status"] == "interrupted"
    assert row["content"] == cancelled["heard_text"]
    assert len(row["content"]) < len(full) and full.startswith(row["content"])
    # A turn cut off gets no turn.done, and is still counted, as interrupted.
    with httpx.Client(base_url=f"http://127.0.0.1:{PORT}") as client:
        assert metric_lines(client, "ray_samvad_turns_total", 'outcome="interrupted"', 'channel="voice"')


async def test_backchannel_does_not_interrupt(api_key, tts):
    ws, _ = await open_session(api_key)
    await ws.send(
        json.dumps({"type": "text.input", "text": "What happens if I do not keep the minimum balance in my account?"})
    )
    seen = []
    await until(ws, "audio", seen)
    await stream_realtime(ws, pcm16k(tts, "haan", lead=0.1, tail=0.8))
    done = await until(ws, "turn.done", seen)
    await ws.close()
    types = [e["type"] for e in seen]
    assert "response.cancelled" not in types, types
    assert "vad.backchannel" in types
    assert done["outcome"] == "complete"


async def test_reconnect_with_the_same_session_continues(api_key):
    ws, started = await open_session(api_key)
    await ws.send(json.dumps({"type": "text.input", "text": "What is the UPI limit per day?"}))
    await until(ws, "turn.done", [])
    await ws.close()
    query = {"session_id": started["session_id"], "resume_token": started["resume_token"]}
    ws, again = await open_session(api_key, query=query)
    assert again["resumed"] and again["session_id"] == started["session_id"]
    await ws.send(json.dumps({"type": "text.input", "text": "And how do I reset my UPI PIN?"}))
    done = await until(ws, "turn.done", [])
    assert done["response"]["metadata"]["context_messages"] >= 2
    await ws.close()
    bad = dict(query, resume_token="0" * 32)
    ws = await websockets.connect(
        URL + f"?session_id={bad['session_id']}&resume_token={bad['resume_token']}",
        additional_headers={"X-API-Key": api_key},
    )
    await ws.send(json.dumps({"type": "session.start"}))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd.code == 4404  # a forged token: as if the session did not exist


async def test_a_dropped_socket_mid_turn_is_reported_as_interrupted(api_key, db):
    ws, started = await open_session(api_key)
    await ws.send(
        json.dumps({"type": "text.input", "text": "What happens if I do not keep the minimum balance in my account?"})
    )
    await until(ws, "audio", [])
    await ws.close()  # hang up while the answer plays
    sid = uuid.UUID(started["session_id"])
    for _ in range(40):  # the ingress notices the hang-up and the actor stores the cut-off turn
        rows = db("SELECT role, status FROM messages WHERE session_id = $1 ORDER BY id", sid)
        if len(rows) == 2 and rows[1]["status"] == "interrupted":
            break
        await asyncio.sleep(0.25)
    query = {"session_id": started["session_id"], "resume_token": started["resume_token"]}
    ws, again = await open_session(api_key, query=query)
    await ws.close()
    assert again["interrupted_turn"] is not None
    rows = db("SELECT role, status FROM messages WHERE session_id = $1 ORDER BY id", uuid.UUID(started["session_id"]))
    assert [(r["role"], r["status"]) for r in rows] == [("user", "complete"), ("assistant", "interrupted")]


async def test_bad_input_on_the_socket(api_key):
    ws, _ = await open_session(api_key)
    await ws.send("this is not json")
    assert (await recv(ws))["code"] == "invalid_json"
    await ws.send(json.dumps({"type": "launch.rockets"}))
    assert (await recv(ws))["code"] == "invalid_message"
    await ws.send(b"\x01\x02\x03")  # odd length: not PCM16
    assert (await recv(ws))["code"] == "bad_frame"
    await ws.send(b"\x00" * (70 * 1024))
    assert (await recv(ws))["code"] == "frame_too_big"
    await ws.send(json.dumps({"type": "ping"}))
    assert (await recv(ws))["type"] == "pong"  # still alive after recoverable errors
    await ws.send(json.dumps({"type": "text.input", "text": "x" * 20000}))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd.code == 1009

    for headers, first, code in [
        ({}, json.dumps({"type": "session.start"}), 4401),  # no key
        ({"X-API-Key": api_key}, b"\x00\x00", 4400),  # audio before session.start
        ({"X-API-Key": api_key}, json.dumps({"type": "session.start", "language": "xx-YY"}), 4400),
    ]:
        ws = await websockets.connect(URL, additional_headers=headers)
        await ws.send(first)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await recv(ws)
        assert closed.value.rcvd.code == code
    # Other sessions are unaffected.
    ws, _ = await open_session(api_key)
    await ws.send(json.dumps({"type": "ping"}))
    assert (await recv(ws))["type"] == "pong"
    await ws.close()


async def test_telephony_mulaw_8khz_audio(api_key, tts):
    import audioop

    import soxr

    pcm16 = np.frombuffer(pcm16k(tts, "How can I block my stolen debit card?"), dtype="<i2").astype(np.float32) / 32768
    pcm8 = (soxr.resample(pcm16, 16000, 8000) * 32767).astype("<i2").tobytes()
    ulaw = audioop.lin2ulaw(pcm8, 2)
    ws, _ = await open_session(api_key, audio={"encoding": "mulaw", "sample_rate": 8000})
    for i in range(0, len(ulaw), 160):  # 20 ms of 8 kHz mu-law
        await ws.send(ulaw[i : i + 160])
        await asyncio.sleep(0.02)
    seen = []
    await until(ws, "turn.done", seen)
    await ws.close()
    transcript = next(e for e in seen if e["type"] == "transcript" and e["final"])["transcript"]["text"]
    assert wer("How can I block my stolen debit card?", transcript) <= 0.35, transcript


async def test_foreign_origins_are_refused(api_key):
    ws = await websockets.connect(URL, additional_headers={"X-API-Key": api_key}, origin="http://evil.example")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd.code == 4403
    ws, started = await open_session(api_key)  # no Origin (non-browser client): fine
    await ws.close()
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{PORT}") as c:
        pre = c.options(
            "/api/v1/turn", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
        same = c.options(
            "/api/v1/turn", headers={"Origin": f"http://127.0.0.1:{PORT}", "Access-Control-Request-Method": "POST"}
        )
        assert same.status_code == 204 and same.headers["access-control-allow-origin"] == f"http://127.0.0.1:{PORT}"


async def test_closing_right_after_turn_done_keeps_the_answer_complete(api_key, db):
    """A finished turn is never rewritten by a later close (it used to become 'interrupted')."""
    for _ in range(2):
        ws, started = await open_session(api_key)
        await ws.send(json.dumps({"type": "text.input", "text": "How do I block my lost debit card?"}))
        done = await until(ws, "turn.done", [])
        await ws.close()  # at once, while the last half second may still be playing
        assert done["outcome"] == "complete"
        await asyncio.sleep(1.5)  # the ingress has seen the close
        rows = db(
            "SELECT role, status FROM messages WHERE session_id = $1 ORDER BY id", uuid.UUID(started["session_id"])
        )
        assert [(r["role"], r["status"]) for r in rows] == [("user", "complete"), ("assistant", "complete")]
        query = {"session_id": started["session_id"], "resume_token": started["resume_token"]}
        ws, again = await open_session(api_key, query=query)
        await ws.close()
        assert again["interrupted_turn"] is None


async def test_resuming_another_keys_session_is_not_found(api_key, serve_app):
    from tests.e2e.helpers import make_key

    ws, started = await open_session(api_key)
    await ws.close()
    other = make_key(serve_app, "voice-other-tenant")
    query = f"?session_id={started['session_id']}&resume_token={started['resume_token']}"
    ws = await websockets.connect(URL + query, additional_headers={"X-API-Key": other})
    await ws.send(json.dumps({"type": "session.start"}))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd.code == 4404


async def test_shutdown_drains_live_calls_and_tells_them_how_to_resume(api_key, db):
    """What `samvad run` does on SIGINT/SIGTERM before Serve stops: the answer playing finishes,
    the caller gets `session.closing` with its resume token and a 1012 close, new calls are
    refused; the conversation resumes on a new connection with nothing lost."""
    import ray

    from samvad.cli import drain_task

    drain = drain_task()  # as `samvad run` sends it
    ws, started = await open_session(api_key)
    await ws.send(json.dumps({"type": "text.input", "text": "What happens if I do not keep the minimum balance?"}))
    seen: list = []
    await until(ws, "audio", seen)
    try:
        await asyncio.to_thread(ray.get, drain.remote("samvad"))
        closing = await until(ws, "session.closing", seen, timeout=60)
        assert [e["type"] for e in seen].index("turn.done") < len(seen) - 1  # the answer finished first
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd.code == 1012
        assert closing["session_id"] == started["session_id"] and closing["resume_token"] == started["resume_token"]
        refused = await websockets.connect(URL, additional_headers={"X-API-Key": api_key})
        await refused.send(json.dumps({"type": "session.start"}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv(refused)
        assert closed.value.rcvd.code == 1012
    finally:
        await asyncio.to_thread(ray.get, drain.remote("samvad", False))
    rows = db("SELECT role, status FROM messages WHERE session_id = $1 ORDER BY id", uuid.UUID(started["session_id"]))
    assert [(r["role"], r["status"]) for r in rows] == [("user", "complete"), ("assistant", "complete")]
    query = {"session_id": closing["session_id"], "resume_token": closing["resume_token"]}
    ws, again = await open_session(api_key, query=query)
    await ws.close()
    assert again["resumed"] and again["interrupted_turn"] is None


async def test_ingress_death_mid_answer_stores_what_was_heard(api_key, db):
    """The ingress carrying a call dies while the answer plays: the answer is stored as cut off
    (never `complete`), and resuming reports it as the interrupted turn."""
    import ray

    from tests.e2e.test_faults import _replicas, _wait_healthy

    ws, started = await open_session(api_key)
    await ws.send(
        json.dumps({"type": "text.input", "text": "What happens if I do not keep the minimum balance in my account?"})
    )
    done = []
    await until(ws, "audio", done)
    for name in _replicas("Ingress"):  # whichever one carries this call
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    with pytest.raises((websockets.ConnectionClosed, asyncio.TimeoutError)):
        while True:
            await recv(ws, timeout=30)
    # The host finishes the turn on its own (nobody is left to hear it): its record lands shortly.
    for _ in range(100):
        rows = db(
            "SELECT turn_id, role, status FROM messages WHERE session_id = $1 ORDER BY id",
            uuid.UUID(started["session_id"]),
        )
        if len(rows) == 2:
            break
        await asyncio.sleep(0.1)
    assert [(r["role"], r["status"]) for r in rows] == [("user", "complete"), ("assistant", "interrupted")]
    await asyncio.to_thread(_wait_healthy)
    query = {"session_id": started["session_id"], "resume_token": started["resume_token"]}
    for _ in range(20):  # the proxy learns of the new replicas (HAProxy answers 503 until then)
        try:
            ws, again = await open_session(api_key, query=query)
            break
        except (AssertionError, websockets.ConnectionClosed, websockets.InvalidStatus, OSError):
            await asyncio.sleep(0.5)
    await ws.close()
    assert again["interrupted_turn"] == rows[1]["turn_id"]


def _speech_end_s(pcm: bytes) -> float:
    """Where the speech in `pcm` ends (the last 20 ms frame above -40 dBFS), in seconds."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    loud = np.nonzero(10 * np.log10(np.mean(frames**2, axis=1) + 1e-12) > -40)[0]
    return (int(loud[-1]) + 1) * 0.02


async def test_a_trailing_utterance_is_never_cut_early_and_a_finished_one_never_waits_longer(api_key, tts):
    """Endpointing by the words (voice.early_end): "my account number is" must wait out the whole
    vad.min_silence_ms however early its transcript arrives; "… debit card?" ends then at the
    latest (earlier when the early transcript beats the silence, which depends on ASR speed)."""
    silence_s = load_settings().vad.min_silence_ms / 1000
    waits = {}
    for text in ("How do I block my lost debit card?", "My account number is"):
        ws, _ = await open_session(api_key)
        pcm = pcm16k(tts, text, lead=0.3, tail=1.5)
        sender = asyncio.create_task(stream_realtime(ws, pcm))
        ended = await until(ws, "vad.speech_end", [])
        waits[text] = ended["at"] - _speech_end_s(pcm)
        await sender
        await ws.close()
    assert waits["My account number is"] >= silence_s - 0.05, waits
    assert waits["How do I block my lost debit card?"] <= silence_s + 0.2, waits


async def test_a_pause_inside_a_question_discards_the_early_work_and_keeps_one_turn(api_key, tts, db):
    """The caller pauses mid-question longer than voice.early_asr_ms but shorter than the
    endpointing silence: the early transcript of the first half is speculative work, discarded
    when speech resumes; the question is one turn, transcribed whole."""
    s = load_settings()
    pause_ms = 300  # past early ASR (150 ms) and the VAD's lag, before the end (400 ms)
    assert s.voice.early_asr_ms + 100 <= pause_ms <= s.vad.min_silence_ms - 50
    # The first half ends on a word that needs more ("my"), so that however fast the early
    # transcript comes, voice.early_end cannot take it for the whole question (Whisper may close
    # "How do I block" with a full stop): what this checks is the discarded early work.
    first, second = pcm16k(tts, "How do I block my", lead=0.3, tail=0.0), pcm16k(tts, "lost debit card?", lead=0.0)
    gap = b"\x00\x00" * (16 * pause_ms)
    with httpx.Client(base_url=f"http://127.0.0.1:{PORT}") as client:

        def discarded() -> float:
            lines = metric_lines(client, "ray_samvad_early_asr_total", 'result="discarded"', timeout=0)
            return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

        before = discarded()
        started, seen = await ask_aloud(api_key, first + gap + second)
        assert [e["type"] for e in seen].count("vad.speech_end") == 1, [e["type"] for e in seen]
        final = next(e for e in seen if e["type"] == "transcript" and e["final"])["transcript"]["text"]
        assert wer("How do I block my lost debit card?", final) <= 0.25, final
        rows = db("SELECT role FROM messages WHERE session_id = $1 ORDER BY id", uuid.UUID(started["session_id"]))
        assert [r["role"] for r in rows] == ["user", "assistant"]
        deadline = asyncio.get_running_loop().time() + 30
        while discarded() <= before and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(1.0)
        assert discarded() > before  # the first half's early transcript was started, then thrown away
