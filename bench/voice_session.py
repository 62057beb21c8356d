"""Voice-session benchmark over the real Serve graph (loopback only, bounded):

  latency   end of speech -> first audio byte over >= 20 spoken turns (offline engines), the
            question streamed at real-time pace; p50/p95, endpointing silence included.
  capacity  live sessions with zero-cost stub engines, each asking a question every few seconds,
            ramped in steps until errors appear or the steps run out; errors, turn latency and
            memory per session actor at each step.

    python bench/voice_session.py latency [--turns 20] [--early-asr-ms 0,150]
    python bench/voice_session.py capacity [--steps 8,16,32,64] [--hold 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
import websockets  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402

from bench_common import PORT, serve_up  # noqa: E402
console = Console()


async def open_ws(key: str):
    ws = await websockets.connect(f"ws://127.0.0.1:{PORT}/api/v1/voice-session", additional_headers={"X-API-Key": key},
                                  max_size=None, open_timeout=60)
    await ws.send(json.dumps({"type": "session.start", "language": "en-IN"}))
    started = json.loads(await ws.recv())
    assert started["type"] == "session.started", started
    return ws, started


async def latency(key: str, turns: int) -> list[float]:
    from samvad.audio import decode_audio, float_to_pcm16
    from samvad.providers.local.espeak import EspeakTTS
    from samvad.settings import load_settings
    from tests.speech import speak_wav

    s = load_settings()
    tts = EspeakTTS(s.tts.espeak, s.languages)
    questions = [q["question"] for q in yaml.safe_load((ROOT / "tests/data/heldout_questions.yaml").read_text())]
    ws, _ = await open_ws(key)
    results = []
    for i in track(range(turns), description="spoken turns", console=console):
        speech = decode_audio(speak_wav(tts, questions[i % len(questions)], lead_silence=0.3), target_rate=16000, max_seconds=60)
        pcm, tail = float_to_pcm16(speech.samples), b"\x00\x00" * 16000 * 2
        step = 640  # 20 ms
        for j in range(0, len(pcm), step):
            await ws.send(pcm[j : j + step])
            await asyncio.sleep(0.02)
        end_of_speech = time.perf_counter()

        async def silence():
            for j in range(0, len(tail), step):
                await ws.send(tail[j : j + step])
                await asyncio.sleep(0.02)

        feeder = asyncio.create_task(silence())
        first_audio = None
        while True:
            ev = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if ev["type"] == "audio" and first_audio is None:
                first_audio = time.perf_counter()
            if ev["type"] == "turn.done":
                break
        await feeder
        results.append((first_audio - end_of_speech) * 1000)
    await ws.close()
    return sorted(results)


def latency_table(rows: list[tuple[str, list[float]]], turns: int) -> None:
    from samvad.settings import load_settings

    t = Table(title=f"end of speech -> first audio byte, {turns} spoken turns per row, offline engines (ms)")
    for c in ("voice.early_asr_ms", "p50", "p95", "min", "max", "endpointing silence (config)"):
        t.add_column(c)
    for label, r in rows:
        t.add_row(label, f"{statistics.median(r):.0f}", f"{r[int(0.95 * (len(r) - 1))]:.0f}", f"{r[0]:.0f}", f"{r[-1]:.0f}",
                  f"{load_settings().vad.min_silence_ms} ms")
    console.print(t)


async def capacity(key: str, steps: list[int], hold: float, every: float) -> None:
    import ray

    sessions: list = []
    rows = []
    for target in steps:
        try:
            while len(sessions) < target:
                sessions.append(await open_ws(key))
        except Exception as exc:  # noqa: BLE001
            rows.append((target, len(sessions), 0, 0, f"open failed: {type(exc).__name__}", "", ""))
            break
        latencies, errors = [], 0

        async def caller(ws, stop_at):
            nonlocal errors
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    await ws.send(json.dumps({"type": "text.input", "text": "what is the stub answer"}))
                    while True:
                        ev = json.loads(await asyncio.wait_for(ws.recv(), 30))
                        if ev["type"] == "error":
                            errors += 1
                        if ev["type"] == "turn.done":
                            break
                    latencies.append((time.perf_counter() - t0) * 1000)
                except Exception:  # noqa: BLE001
                    errors += 1
                    return
                await asyncio.sleep(every)

        stop_at = time.monotonic() + hold
        await asyncio.gather(*(caller(ws, stop_at) for ws, _ in sessions))
        pss = []
        for _, started in sessions[:8]:
            info = ray.get(ray.get_actor(f"session:{started['session_id']}", namespace="samvad").info.remote())
            pss.append(info["pss_bytes"] / 2**20)
        avail = psutil.virtual_memory().available / 2**30
        latencies.sort()
        rows.append((target, len(sessions), len(latencies), errors,
                     f"{statistics.median(latencies):.0f}/{latencies[int(0.95 * (len(latencies) - 1))]:.0f}" if latencies else "-",
                     f"{statistics.median(pss):.0f}", f"{avail:.1f}"))
        console.print(f"step {target}: {len(latencies)} turns, {errors} errors")
        if errors:
            break
    for ws, _ in sessions:
        await ws.close()
    t = Table(title=f"live sessions with stub engines, a question every {every:.0f} s, {hold:.0f} s per step")
    for c in ("target", "open", "turns", "errors", "turn p50/p95 ms", "actor PSS MB (p50)", "free GiB"):
        t.add_column(c)
    for r in rows:
        t.add_row(*map(str, r))
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["latency", "capacity"])
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--steps", default="8,16,32,64")
    ap.add_argument("--hold", type=float, default=20.0)
    ap.add_argument("--every", type=float, default=3.0)
    ap.add_argument("--early-asr-ms", default=None,
                    help="latency: voice.early_asr_ms values to compare in this run, e.g. 0,150 (0 = off)")
    args = ap.parse_args()
    config = str(ROOT / "configs" / ("default.yaml" if args.mode == "latency" else "stub.yaml"))
    if args.mode == "capacity":  # measure the machine, not the per-key limit
        os.environ.setdefault("SAMVAD_VOICE__MAX_SESSIONS_PER_KEY", "100000")
        key, down = serve_up(config)
        try:
            asyncio.run(capacity(key, [int(x) for x in args.steps.split(",")], args.hold, args.every))
        finally:
            down()
        return
    rows = []
    for value in (args.early_asr_ms.split(",") if args.early_asr_ms else [None]):
        if value is not None:  # one service per setting, one after the other, in this run
            os.environ["SAMVAD_VOICE__EARLY_ASR_MS"] = value
        key, down = serve_up(config)
        try:
            rows.append((value or "config", asyncio.run(latency(key, args.turns))))
        finally:
            down()
    latency_table(rows, args.turns)


if __name__ == "__main__":
    main()
