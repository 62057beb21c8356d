"""Offline pipeline benchmark, the old offline defaults (Whisper tiny.en over a 30 s window,
all-MiniLM-L6-v2) and the new ones (Whisper base multilingual with the utterance-sized window,
multilingual-e5-small) side by side in one run: per-stage p50 over spoken turns in voices the
tests never use, ASR word error rate, end of speech -> first audio byte; and index build
throughput as a ratio to the embedder's raw encode on the same chunks (alternating runs,
because these machines are noisy).

    python -m bench.pipeline [--turns 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import track
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]

from bench.bench_common import environment  # noqa: E402
from bench.voice_session import DEFAULTS, VOICES, _spoken
from rag_index.build import build_index  # noqa: E402
from rag_index.corpus import chunk_document, load_corpus  # noqa: E402
from rag_index.pipeline import local_runner  # noqa: E402
from samvad.audio import decode_audio, float_to_pcm16, wav_bytes  # noqa: E402
from samvad.embeddings import get_embedder  # noqa: E402
from samvad.providers.local.vad import Endpointer, SileroVad, SpeechEnded  # noqa: E402
from samvad.settings import load_settings  # noqa: E402
from samvad.turn import TurnRequest  # noqa: E402
from testkit.speech import wer  # noqa: E402

console = Console()


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def configured(env: dict[str, str], index_dir: Path):
    """The settings with `env` (SAMVAD_… overrides, bench/voice_session.py DEFAULTS) applied."""
    with environment(env):
        s = load_settings()
    return s.model_copy(update={"rag": s.rag.model_copy(update={"index_dir": index_dir})})


async def turns(label: str, env: dict[str, str], n: int) -> dict[str, float]:
    settings = configured(env, Path(tempfile.mkdtemp()) / "index")
    runner = local_runner(settings)
    questions = [q["question"] for q in yaml.safe_load((ROOT / "tests/data/heldout_questions.yaml").read_text())]
    questions = (questions * ((n + len(questions) - 1) // len(questions)))[:n]
    stage_total: dict[str, list[float]] = {}
    endpoint_ms, first_audio_ms, eos_to_audio, errors = [], [], [], []
    vad = SileroVad(16000)
    await anext(runner.run(TurnRequest(turn_id="warm", text="warm up")))  # load models outside the figures
    for i, q in enumerate(track(questions, description=f"turns, {label}", console=console)):
        voice, wpm = VOICES[i % len(VOICES)]
        pcm = _spoken(q, voice, wpm)
        audio = decode_audio(wav_bytes(pcm + b"\x00\x00" * 16000, 16000), target_rate=16000, max_seconds=60)
        speech_end = len(pcm) / 2 / 16000 - 0.4  # _spoken leaves ~0.4 s after the last word
        ep = Endpointer(vad, settings.vad)
        vad.reset()
        ended = None
        for j in range(0, len(audio.samples), 320):
            for ev in ep.feed(audio.samples[j : j + 320]):
                if isinstance(ev, SpeechEnded):
                    ended = ev
            if ended:
                break
        assert ended is not None, "endpointer missed the utterance"
        endpoint_ms.append((ended.at - speech_end) * 1000)  # silence waited for, in audio time
        req = TurnRequest(turn_id=q[:8], audio=wav_bytes(float_to_pcm16(ended.audio), 16000))
        done, heard = None, ""
        async for ev in runner.run(req):
            if ev.type == "transcript":
                heard = ev.transcript.text
            if ev.type == "turn.done":
                done = ev
        errors.append(wer(q, heard))
        for stage, t in done.stages.items():
            stage_total.setdefault(stage, []).append(t.total_ms)
        first_audio_ms.append(done.first_audio_ms)
        eos_to_audio.append(endpoint_ms[-1] + done.first_audio_ms)
    out = {f"{stage} p50 ms": p50(v) for stage, v in stage_total.items()}
    out |= {
        "ASR word error rate": statistics.mean(errors),
        "endpointing (silence waited) ms": p50(endpoint_ms),
        "turn start -> first audio p50 ms": p50(first_audio_ms),
        "end of speech -> first audio p50 ms": p50(eos_to_audio),
        "end of speech -> first audio max ms": max(eos_to_audio),
    }
    return out


def side_by_side(n: int) -> None:
    old = asyncio.run(turns("old defaults", DEFAULTS["old"], n))
    new = asyncio.run(turns("new defaults", DEFAULTS["new"], n))
    table = Table(title=f"offline pipeline, {n} spoken turns in {len(VOICES)} unseen voices")
    for col in ("", "old: tiny.en (30 s window), MiniLM", "new: base (utterance window), e5-small"):
        table.add_column(col)
    for key in dict.fromkeys([*old, *new]):
        fmt = "{:.3f}" if "rate" in key else "{:.0f}"
        table.add_row(key, fmt.format(old.get(key, float("nan"))), fmt.format(new.get(key, float("nan"))))
    console.print(table)


def index_throughput(repeats: int) -> None:
    settings = load_settings()
    embedder = get_embedder(settings.embeddings)
    corpus = settings.rag.corpus_dir
    docs, _ = load_corpus(corpus)
    chunks = [c.text for d in docs for c in chunk_document(d, settings.rag.chunk_chars, settings.rag.overlap_chars)]
    ours, raw = [], []
    for _ in track(range(repeats), description="index build vs raw encode", console=console):
        t = time.perf_counter()
        embedder.passages(chunks)
        raw.append(len(chunks) / (time.perf_counter() - t))
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            build_index(
                corpus,
                Path(tmp) / "idx",
                embedder,
                chunk_chars=settings.rag.chunk_chars,
                overlap_chars=settings.rag.overlap_chars,
            )
            ours.append(len(chunks) / (time.perf_counter() - t))
    table = Table(
        title=f"index build throughput, {embedder.model_name}, {len(chunks)} chunks, {repeats} alternating runs"
    )
    for col in ("", "chunks/s (median)"):
        table.add_column(col)
    table.add_row("raw encode", f"{p50(raw):.0f}")
    table.add_row("samvad index build (load, chunk, embed, write)", f"{p50(ours):.0f}")
    table.add_row("ratio build / raw", f"{p50(ours) / p50(raw):.2f}")
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    side_by_side(args.turns)
    index_throughput(args.repeats)


if __name__ == "__main__":
    main()
