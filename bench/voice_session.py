"""Voice-session benchmark over the real Serve graph (loopback only, bounded):

latency   from the real end of speech (the last voiced frame of the audio sent) to the first
          answer audio, for questions in eSpeak voices and speeds the tests never use, with
          natural trailing silence, each in a new session and all in one warm one; p50/p95/max
          and the timeline (endpoint, partial and final transcript, first sentence); then the
          same questions through the demo page in headless Chromium (its own figure), and as
          phone calls through each carrier's media stream (8 kHz in its frames and encoding).
capacity  live calls with zero-cost stub engines, each streaming audio like the demo page (a
          recorded question paced in real time, silence between questions), ramped in steps
          until errors appear or the steps run out; errors, latency from the end of speech,
          frames per second, and where the CPU goes (proxy, ingress, sessions, stages).

  python -m bench.voice_session latency [--turns 20] [--page-turns 6] [--phone twilio,exotel,plivo] [--early-asr-ms 0,150]
  python -m bench.voice_session capacity [--steps 25,50,100,125] [--hold 30] [--frame-ms 100] [--ingress proxy,haproxy]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import httpx  # noqa: E402
import psutil  # noqa: E402
import websockets  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.bench_common import PORT, environment, metrics_text, pct, processes_by_kind, serve_requests, serve_up  # noqa: E402

console = Console()


async def open_ws(key: str):
    ws = await websockets.connect(
        f"ws://127.0.0.1:{PORT}/api/v1/voice-session",
        additional_headers={"X-API-Key": key},
        max_size=None,
        open_timeout=60,
    )
    await ws.send(json.dumps({"type": "session.start", "language": "en-IN"}))
    started = json.loads(await ws.recv())
    assert started["type"] == "session.started", started
    return ws, started


# Voices the tests never use (they speak en-us at 170 wpm): accents and speeds of eSpeak NG.
VOICES = [
    ("en-029", 150),
    ("en-gb-scotland", 175),
    ("en-gb-x-rp+f3", 160),
    ("en-us-nyc+m3", 190),
    ("en-gb-x-gbclan", 140),
    ("en-us+f2", 200),
]
FRAME_MS = 20
VOICED_DBFS = -40.0  # a 20 ms frame louder than this is speech (eSpeak's pauses sit far below)


def _spoken(text: str, voice: str, wpm: int) -> bytes:
    """The question in `voice` at `wpm`, 16 kHz PCM16, with 0.3 s before and ~0.4 s of natural
    trailing silence after it (what a caller's line sends before endpointing can end the turn)."""
    import numpy as np

    from samvad.audio import decode_audio, float_to_pcm16, wav_bytes
    from samvad.providers.base import SpeechRequest
    from samvad.providers.local.espeak import EspeakTTS
    from samvad.settings import load_settings
    from testkit import aio

    s = load_settings()
    tts = EspeakTTS(s.tts.espeak.model_copy(update={"rate_wpm": wpm}), s.languages)

    async def run():
        chunks = [c async for c in tts.stream(SpeechRequest(text=text, language="en-IN", voice=voice), [])]
        return b"".join(c.pcm16 for c in chunks), chunks[0].sample_rate

    pcm, rate = aio.run(run)
    samples = decode_audio(wav_bytes(pcm, rate), target_rate=16000, max_seconds=60).samples
    quiet = (np.random.default_rng(1).standard_normal(16000) * 10 ** (-70 / 20)).astype(np.float32)
    return float_to_pcm16(np.concatenate([quiet[:4800], samples, quiet[:6400]]))


def _last_voiced_frame(pcm: bytes) -> int:
    """Index of the last 20 ms frame with speech energy: the real end of speech, from the audio."""
    import numpy as np

    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    n = 16 * FRAME_MS
    frames = x[: len(x) // n * n].reshape(-1, n)
    loud = np.nonzero(10 * np.log10(np.mean(frames**2, axis=1) + 1e-12) > VOICED_DBFS)[0]
    return int(loud[-1])


async def _ask(ws, pcm: bytes) -> dict[str, float]:
    """Stream one question at real-time pace, then a quiet line until the answer's first audio;
    returns the event timeline in ms from the last voiced frame's end."""
    import numpy as np

    step = 32 * FRAME_MS
    last = _last_voiced_frame(pcm)
    quiet = (np.random.default_rng(2).standard_normal(16 * FRAME_MS) * 10 ** (-70 / 20) * 32768).astype("<i2").tobytes()
    eos, marks, partials, done = None, {}, [], asyncio.Event()
    t0 = time.perf_counter()

    async def feed():
        nonlocal eos
        i = 0
        while not done.is_set():
            frame = pcm[i * step : (i + 1) * step] if i * step < len(pcm) else quiet
            due = t0 + i * FRAME_MS / 1000
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await ws.send(frame)
            if i == last:
                eos = due + FRAME_MS / 1000  # the frame's end, on the stream's clock
            i += 1

    feeder = asyncio.create_task(feed())
    try:
        while True:
            ev = json.loads(await asyncio.wait_for(ws.recv(), 60))
            now = time.perf_counter()
            kind = {"vad.speech_end": "endpoint", "response.delta": "first sentence", "audio": "first audio"}.get(
                ev["type"]
            )
            if ev["type"] == "transcript":
                kind = "transcript" if ev.get("final") else None
                if not ev.get("final"):
                    partials.append(now)  # while the caller speaks, then the early transcript
            if kind and kind not in marks:
                marks[kind] = now
            if ev["type"] == "turn.done" or ev["type"] == "error":
                break
    finally:
        done.set()
        await feeder
    if partials:
        marks["early transcript"] = partials[-1]
    out = {k: (v - eos) * 1000 for k, v in marks.items()}
    out["partials while speaking"] = sum(t < eos for t in partials)
    return out


async def latency(key: str, turns: int, fresh: bool) -> list[dict[str, float]]:
    """`turns` spoken questions in the unseen voices; `fresh`: each in a new session (a new
    caller), else all in one warm session."""
    questions = [q["question"] for q in yaml.safe_load((ROOT / "tests/data/heldout_questions.yaml").read_text())]
    audio = [_spoken(questions[i % len(questions)], *VOICES[i % len(VOICES)]) for i in range(turns)]
    results = []
    ws = None if fresh else (await open_ws(key))[0]
    for i in track(
        range(turns), description=f"spoken turns ({'new sessions' if fresh else 'one session'})", console=console
    ):
        if fresh:
            ws, _ = await open_ws(key)
        results.append(await _ask(ws, audio[i]))
        if fresh:
            await ws.close()
    if not fresh:
        await ws.close()
    return results


NUMBER = "+918000000001"


async def phone_route(dsn: str, key: str, config: str, carriers: list[str]) -> dict[str, str]:
    """The bench key's number and a stream token per carrier (what an answer webhook gives)."""
    from samvad.settings import load_settings, secret
    from samvad.storage.repository import Repository
    from samvad.telephony import signing

    s = load_settings(config)
    repo = await Repository.connect(dsn, secret(s.service, "key"), max_size=1)
    try:
        row = await repo.verify_key(key)
        assert row is not None
        route = await repo.add_phone_route(row.id, NUMBER, "en-IN")
    finally:
        await repo.close()
    return {c: signing.make(secret(s.service, "phone"), "s", c, route.id, 3600) for c in carriers}


async def _ask_phone(carrier: str, token: str, pcm16k: bytes) -> dict[str, float]:
    """One phone call: the carrier's opening, the question at real-time pace in its frames and
    encoding, then a quiet line until the answer's first audio; ms from the last voiced frame."""
    from testkit.phone import Carrier, to_8k

    c = Carrier(carrier)
    url = f"ws://127.0.0.1:{PORT}/api/v1/telephony/{carrier}" + (f"?token={token}" if carrier == "exotel" else "")
    params = {} if carrier == "exotel" else {"token": token, "from": "919876543210", "to": NUMBER.lstrip("+")}
    last = _last_voiced_frame(pcm16k)  # 20 ms frames
    pcm = to_8k(pcm16k[: (last + 1) * 32 * FRAME_MS], 16000)
    eos_at = len(pcm) / 2 / 8000  # seconds into the stream where speech ends
    pcm += to_8k(pcm16k[(last + 1) * 32 * FRAME_MS :], 16000)
    frame_s = c.frame_bytes / 2 / 8000
    marks: dict[str, float] = {}
    done = asyncio.Event()
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        for m in c.opening(params):
            await ws.send(json.dumps(m))
        t0 = time.perf_counter()

        async def feed():
            i = 0
            while not done.is_set():
                chunk = pcm[i * c.frame_bytes : (i + 1) * c.frame_bytes].ljust(c.frame_bytes, b"\x00")
                await asyncio.sleep(max(0.0, t0 + i * frame_s - time.perf_counter()))
                await ws.send(json.dumps(c.media_message(chunk, i)))
                i += 1

        feeder = asyncio.create_task(feed())
        try:
            while "first audio" not in marks:
                m = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if m.get("event") in ("media", "playAudio"):
                    marks["first audio"] = time.perf_counter()
        finally:
            done.set()
            await feeder
    eos = t0 + eos_at
    return {k: (v - eos) * 1000 for k, v in marks.items()}


async def phone_latency(carrier: str, token: str, turns: int) -> list[dict[str, float]]:
    """`turns` spoken questions in the unseen voices, each a new phone call through `carrier`."""
    questions = [q["question"] for q in yaml.safe_load((ROOT / "tests/data/heldout_questions.yaml").read_text())]
    audio = [_spoken(questions[i % len(questions)], *VOICES[i % len(VOICES)]) for i in range(turns)]
    return [
        await _ask_phone(carrier, token, audio[i])
        for i in track(range(turns), description=f"phone calls ({carrier})", console=console)
    ]


def page(key: str, turns: int) -> list[dict[str, float]]:
    """The same questions asked through the demo page in headless Chromium, its microphone fed
    from a WAV (the questions, 20 s apart so each answer plays out); the page's own figure: its
    captured audio's end of speech to the moment the answer's first sound is scheduled to be
    heard (`window.samvadTimeline`, also shown to the user)."""
    import shutil
    import tempfile

    import numpy as np
    from playwright.sync_api import sync_playwright

    from samvad.audio import wav_bytes

    questions = [q["question"] for q in yaml.safe_load((ROOT / "tests/data/heldout_questions.yaml").read_text())]
    gap = (np.random.default_rng(3).standard_normal(16000 * 20) * 10 ** (-70 / 20) * 32768).astype("<i2").tobytes()
    pcm = gap[: 16000 * 2 * 2] + b"".join(
        _spoken(questions[i % len(questions)], *VOICES[i % len(VOICES)]) + gap for i in range(turns)
    )
    with tempfile.TemporaryDirectory() as tmp:
        mic = Path(tmp) / "mic.wav"
        mic.write_bytes(wav_bytes(pcm, 16000))
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--autoplay-policy=no-user-gesture-required",
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={mic}",
                ],
            )
            try:
                pg = browser.new_page()
                pg.goto(f"http://127.0.0.1:{PORT}/#api_key={key}")
                pg.click("#start")
                pg.wait_for_function(
                    f"window.samvadTimeline.length >= {turns}", timeout=(turns * 25 + 60) * 1000, polling=500
                )
                timeline = pg.evaluate("window.samvadTimeline")
            finally:
                browser.close()
    return [{"first audio": float(t["ms"])} for t in timeline[:turns]]


# The offline defaults before multilingual ASR and embeddings (issue 15), and as they are now.
DEFAULTS = {
    "old": {
        "SAMVAD_ASR__WHISPER__MODEL": "tiny.en",
        "SAMVAD_ASR__WHISPER__SHORT_WINDOW": "false",
        "SAMVAD_EMBEDDINGS__BACKEND": "sentence-transformers",
    },
    "new": {},
}

TIMELINE = ("partials while speaking", "endpoint", "early transcript", "transcript", "first sentence", "first audio")


def latency_table(rows: list[tuple[str, list[dict[str, float]]]], turns: int) -> None:
    from samvad.settings import load_settings

    s = load_settings()
    t = Table(
        title=f"from the real end of speech (last voiced frame), {turns} questions per row in {len(VOICES)} unseen "
        f"eSpeak voices, offline engines; endpointing silence {s.vad.min_silence_ms} ms (ms)"
    )
    for c in ("setting", "sessions", "first audio p50", "p95", "max", "> 2 s", *(f"{k} p50" for k in TIMELINE[:-1])):
        t.add_column(c, overflow="fold")
    slowest = []
    for label, r in rows:
        first = sorted(x["first audio"] for x in r if "first audio" in x)
        cells = [
            f"{statistics.median([x[k] for x in r if k in x]):.{1 if k.startswith('partials') else 0}f}"
            if any(k in x for x in r)
            else "-"
            for k in TIMELINE[:-1]
        ]
        t.add_row(
            *label.split("|"),
            f"{statistics.median(first):.0f}",
            f"{pct(first, 0.95):.0f}",
            f"{first[-1]:.0f}",
            str(sum(v > 2000 for v in first)),
            *cells,
        )
        worst = max((x for x in r if "first audio" in x), key=lambda x: x["first audio"])
        slowest.append(
            f"{label.replace('|', ', ')}: turn {r.index(worst) + 1} of {len(r)}: "
            + ", ".join(f"{k} {worst[k]:+.0f}" for k in TIMELINE if k in worst and not k.startswith("partials"))
        )
    console.print(t)
    console.print("The slowest turn of each row (ms from the end of speech):", *slowest, sep="\n  ")


def _question_pcm(text: str = "What is the UPI limit per day?") -> bytes:
    """A recorded question (eSpeak), 16 kHz PCM16, ending at its last voiced sample."""
    from samvad.audio import decode_audio, float_to_pcm16
    from samvad.providers.local.espeak import EspeakTTS
    from samvad.settings import load_settings
    from testkit.speech import speak_wav

    s = load_settings()
    speech = decode_audio(speak_wav(EspeakTTS(s.tts.espeak, s.languages), text), target_rate=16000, max_seconds=60)
    return float_to_pcm16(speech.samples)


def _quiet_line(samples: int) -> bytes:
    """A quiet line between questions: -70 dBFS noise, not digital zeros."""
    import numpy as np

    from samvad.audio import float_to_pcm16

    return float_to_pcm16((np.random.default_rng(0).standard_normal(samples) * 10 ** (-70 / 20)).astype(np.float32))


class Caller:
    """One live call, like the demo page: audio frames every `frame_ms`, always (silence between
    questions too); a question every `every` seconds; turn latency from its end of speech."""

    def __init__(self, ws, question: bytes, frame_ms: int, every: float) -> None:
        self.ws, self.question, self.every = ws, question, every
        self.step = 16 * frame_ms * 2
        self.frame_s = frame_ms / 1000
        self.silence = _quiet_line(self.step // 2)
        self.spoke_at: float | None = None  # end of speech of the pending question
        self.next_question = float("inf")
        self.first_audio: list[float] = []
        self.speech_end: list[float] = []  # when the service declared the end of speech
        self.turns: list[float] = []
        self.errors = 0
        self.frames = 0

    async def send(self, stop_at: float) -> None:
        t = time.perf_counter()
        self.next_question = t + random.uniform(0, self.every)
        pending: list[bytes] = []
        while t < stop_at:
            if not pending and self.spoke_at is None and t >= self.next_question:
                pending = [
                    self.question[i : i + self.step].ljust(self.step, b"\x00")
                    for i in range(0, len(self.question), self.step)
                ]
                self.next_question = float("inf")  # the next one once this one is answered
            await self.ws.send(pending.pop(0) if pending else self.silence)
            self.frames += 1
            if not pending and self.next_question == float("inf") and self.spoke_at is None:
                self.spoke_at = time.perf_counter()  # the question's last frame went out
            t += self.frame_s  # paced on an absolute clock: no drift
            await asyncio.sleep(max(0.0, t - time.perf_counter()))

    async def receive(self) -> None:
        while True:
            ev = json.loads(await self.ws.recv())
            if ev["type"] == "error":
                self.errors += 1
            elif ev["type"] == "vad.speech_end" and self.spoke_at is not None:
                self.speech_end.append((time.perf_counter() - self.spoke_at) * 1000)
            elif ev["type"] == "audio" and self.spoke_at is not None and len(self.first_audio) == len(self.turns):
                self.first_audio.append((time.perf_counter() - self.spoke_at) * 1000)
            elif ev["type"] == "turn.done" and self.spoke_at is not None:
                self.turns.append((time.perf_counter() - self.spoke_at) * 1000)
                self.spoke_at = None
                self.next_question = time.perf_counter() + self.every


def _cpu(kinds: dict[str, list[psutil.Process]]) -> dict[str, float]:
    out = {}
    for kind, procs in kinds.items():
        total = 0.0
        for p in procs:
            try:
                c = p.cpu_times()
                total += c.user + c.system
            except psutil.NoSuchProcess:
                pass
        out[kind] = total
    return out


async def capacity(key: str, steps: list[int], hold: float, every: float, frame_ms: int, ingress: str) -> None:
    question = _question_pcm()
    me = psutil.Process()
    callers: list[Caller] = []
    receivers: list[asyncio.Task] = []
    rows, cpu_rows, hop_rows = [], [], []
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", headers={"X-API-Key": key}, timeout=60)
    for target in steps:
        try:
            while len(callers) < target:
                ws, _ = await open_ws(key)
                c = Caller(ws, question, frame_ms, every)
                callers.append(c)
                receivers.append(asyncio.create_task(c.receive()))
        except Exception as exc:  # noqa: BLE001
            rows.append((target, len(callers), "-", "-", f"open failed: {type(exc).__name__}", "", "", "", ""))
            break
        for c in callers:
            c.first_audio, c.turns, c.speech_end, c.errors, c.frames = [], [], [], 0, 0
        kinds = processes_by_kind()
        text0 = await metrics_text(client)
        cpu0, mine0, t0 = _cpu(kinds), sum(me.cpu_times()[:2]), time.perf_counter()
        stop_at = time.perf_counter() + hold
        await asyncio.gather(*(c.send(stop_at) for c in callers))
        await asyncio.sleep(2.0)  # the last answers arrive
        elapsed = time.perf_counter() - t0
        cpu1, mine1 = _cpu(kinds), sum(me.cpu_times()[:2])
        text1 = await metrics_text(client)
        turns = sorted(x for c in callers for x in c.turns)
        first = sorted(x for c in callers for x in c.first_audio)
        ends = sorted(x for c in callers for x in c.speech_end)
        errors = sum(c.errors for c in callers) + sum(1 for r in receivers if r.done())
        frames = sum(c.frames for c in callers)
        rows.append(
            (
                target,
                len(callers),
                len(turns),
                errors,
                f"{pct(ends, 0.5):.0f}/{pct(ends, 0.95):.0f}" if ends else "-",
                f"{pct(first, 0.5):.0f}/{pct(first, 0.95):.0f}" if first else "-",
                f"{pct(turns, 0.5):.0f}/{pct(turns, 0.95):.0f}" if turns else "-",
                f"{frames / hold:.0f}",
                f"{psutil.virtual_memory().available / 2**30:.1f}",
            )
        )
        cpu_rows.append(
            (
                target,
                {k: (cpu1.get(k, 0) - cpu0.get(k, 0)) / elapsed for k in cpu1}
                | {"load client": (mine1 - mine0) / elapsed},
            )
        )
        calls0, calls1 = serve_requests(text0), serve_requests(text1)
        hops = {d: (calls1.get(d, 0) - calls0.get(d, 0)) / max(1, len(turns)) for d in calls1}
        vad = {
            n: _counter(text1, n) - _counter(text0, n)
            for n in ("ray_samvad_vad_frames_total", "ray_samvad_vad_runs_total")
        }
        hop_rows.append((target, hops, vad["ray_samvad_vad_frames_total"] / max(1.0, vad["ray_samvad_vad_runs_total"])))
        console.print(f"step {target}: {len(turns)} turns, {errors} errors")
        if errors:
            break
    for c in callers:
        await c.ws.close()
    for r in receivers:
        r.cancel()
    await client.aclose()
    t = Table(
        title=f"{ingress} ingress: live calls streaming {frame_ms} ms audio frames, stub engines, a question every ~{every:.0f} s, "
        f"{hold:.0f} s per step (latency from the end of speech, ms)"
    )
    for col in (
        "target",
        "open",
        "turns",
        "errors",
        "speech_end p50/p95",
        "first audio p50/p95",
        "turn.done p50/p95",
        "frames/s sent",
        "free GiB",
    ):
        t.add_column(col)
    for r in rows:
        t.add_row(*map(str, r))
    console.print(t)
    if cpu_rows:
        target, cpu = cpu_rows[-1]
        t = Table(title=f"{ingress} ingress: where the CPU goes at {target} calls (cores busy, of 2)")
        for col in ("process kind", "cores"):
            t.add_column(col)
        for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]):
            t.add_row(k, f"{v:.2f}")
        console.print(t)
    if hop_rows:
        t = Table(
            title="Serve calls per voice turn, by deployment called (ingress included: one per call opened "
            "is not a turn's), and audio frames per VAD model run"
        )
        deployments = sorted({d for _, hops, _ in hop_rows for d in hops})
        for col in ("calls", *deployments, "total", "VAD frames/run"):
            t.add_column(col)
        for target, hops, per_run in hop_rows:
            t.add_row(
                str(target),
                *(f"{hops.get(d, 0):.2f}" for d in deployments),
                f"{sum(hops.values()):.2f}",
                f"{per_run:.1f}",
            )
        console.print(t)


def _counter(text: str, name: str) -> float:
    """A counter's value summed over its series (every process's) in a Prometheus text page."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def capacity_run(config: str, ingress: str, steps: list[int], hold: float, every: float, frame_ms: int) -> None:
    key, down = serve_up(config, ingress=ingress)
    try:
        asyncio.run(capacity(key, steps, hold, every, frame_ms, ingress))
    finally:
        down()


def demo_page_frame_ms() -> int:
    """The frame size the demo page sends (its capture worklet's frame length at 16 kHz)."""
    import re

    js = (ROOT / "samvad" / "api" / "static" / "pcm-worklet.js").read_text()
    return int(re.search(r"new Int16Array\((\d+)\)", js).group(1)) // 16


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["latency", "capacity"])
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--steps", default="25,50,100,125")
    ap.add_argument("--hold", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=4.0, help="capacity: seconds between a caller's questions")
    ap.add_argument("--frame-ms", type=int, default=None, help="capacity: audio frame size (default: the demo page's)")
    ap.add_argument(
        "--ingress",
        default="haproxy",
        help="capacity: Serve ingress modes to measure in this run, one after the other: haproxy,proxy",
    )
    ap.add_argument(
        "--page-turns", type=int, default=6, help="latency: questions asked through the demo page (0: none)"
    )
    ap.add_argument(
        "--phone", default="twilio,exotel,plivo", help="latency: carriers whose phone path is measured too ('' none)"
    )
    ap.add_argument(
        "--early-asr-ms",
        default=None,
        help="latency: voice.early_asr_ms values to compare in this run, e.g. 0,150 (0 = off)",
    )
    ap.add_argument(
        "--partials",
        default=None,
        help="latency: voice.partial_interval_ms values to compare in this run, e.g. 0,700 (0 = off)",
    )
    ap.add_argument(
        "--defaults",
        default=None,
        help="latency: offline defaults to compare in this run: old (tiny.en, 30 s window, MiniLM), new",
    )
    args = ap.parse_args()
    config = str(ROOT / "configs" / ("default.yaml" if args.mode == "latency" else "stub.yaml"))
    if args.mode == "capacity":  # measure the machine, not the per-key limit
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        os.environ.setdefault("SAMVAD_VOICE__MAX_SESSIONS_PER_KEY", "100000")
        for ingress in args.ingress.split(","):  # each in a fresh interpreter: Serve reads its mode on import
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                pool.submit(
                    capacity_run,
                    config,
                    ingress,
                    [int(x) for x in args.steps.split(",")],
                    args.hold,
                    args.every,
                    args.frame_ms or demo_page_frame_ms(),
                ).result()
        return
    settings = [
        (f"early_asr_ms={v}", {"SAMVAD_VOICE__EARLY_ASR_MS": v}) for v in (args.early_asr_ms or "").split(",") if v
    ]
    settings += [
        (f"partial_interval_ms={v}", {"SAMVAD_VOICE__PARTIAL_INTERVAL_MS": v})
        for v in (args.partials or "").split(",")
        if v
    ]
    settings += [(f"{d} defaults", DEFAULTS[d]) for d in (args.defaults or "").split(",") if d]
    rows = []
    for label, env in settings or [("config", {})]:
        with environment(env):  # one service per setting, one after the other, in this run
            g = serve_up(config, graph=True)
            key = g.key
            try:
                for fresh in (True, False):
                    rows.append((f"{label}|{'new' if fresh else 'warm'}", asyncio.run(latency(key, args.turns, fresh))))
                if args.page_turns:
                    rows.append((f"{label}|demo page (Chromium), one session", page(key, args.page_turns)))
                carriers = [c for c in args.phone.split(",") if c]
                tokens = asyncio.run(phone_route(g.dsn, key, config, carriers)) if carriers else {}
                for carrier in carriers:  # the telephony path: 8 kHz in the carrier's frames, new calls
                    rows.append(
                        (
                            f"{label}|phone ({carrier}), new calls",
                            asyncio.run(phone_latency(carrier, tokens[carrier], args.turns)),
                        )
                    )
            finally:
                g.down()
    latency_table(rows, args.turns)


if __name__ == "__main__":
    main()
