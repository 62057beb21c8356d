"""Offline pipeline benchmark: per-stage p50 over 10 spoken turns, end of speech -> first audio
byte, and index build throughput as a ratio to raw SentenceTransformer.encode on the same chunks
(both measured side by side in this run, alternating, because these machines are noisy).

    python bench/pipeline.py [--turns 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import track
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag_index.build import build_index  # noqa: E402
from rag_index.corpus import chunk_document, load_corpus  # noqa: E402
from rag_index.pipeline import local_runner  # noqa: E402
from samvad.audio import decode_audio, float_to_pcm16, wav_bytes  # noqa: E402
from samvad.embeddings import get_embedder  # noqa: E402
from samvad.providers.local.vad import Endpointer, SileroVad, SpeechEnded  # noqa: E402
from samvad.settings import load_settings  # noqa: E402
from samvad.turn import TurnRequest  # noqa: E402
from tests.speech import speak_wav  # noqa: E402

console = Console()


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def turns(n: int) -> None:
    settings = load_settings()
    tmp = Path(tempfile.mkdtemp())
    settings = settings.model_copy(update={"rag": settings.rag.model_copy(update={"index_dir": tmp / "index"})})
    runner = local_runner(settings)
    questions = [q["question"] for q in yaml.safe_load((ROOT / "tests/data/heldout_questions.yaml").read_text())]
    questions = (questions * ((n + len(questions) - 1) // len(questions)))[:n]
    stage_ttfb: dict[str, list[float]] = {}
    stage_total: dict[str, list[float]] = {}
    endpoint_ms, first_audio_ms, eos_to_audio = [], [], []
    vad = SileroVad(16000)
    await anext(runner.run(TurnRequest(turn_id="warm", text="warm up")))  # load models outside the figures
    for q in track(questions, description="turns", console=console):
        wav = speak_wav(runner.engines.tts, q, lead_silence=0.5, tail_silence=1.5)
        audio = decode_audio(wav, target_rate=16000, max_seconds=60)
        speech_end = audio.duration - 1.5
        ep = Endpointer(vad, settings.vad)
        vad.reset()
        ended = None
        for i in range(0, len(audio.samples), 320):
            for ev in ep.feed(audio.samples[i : i + 320]):
                if isinstance(ev, SpeechEnded):
                    ended = ev
            if ended:
                break
        assert ended is not None, "endpointer missed the utterance"
        endpoint_ms.append((ended.at - speech_end) * 1000)  # silence waited for, in audio time
        req = TurnRequest(turn_id=q[:8], audio=wav_bytes(float_to_pcm16(ended.audio), 16000))
        done = None
        async for ev in runner.run(req):
            if ev.type == "turn.done":
                done = ev
        for stage, t in done.stages.items():
            stage_ttfb.setdefault(stage, []).append(t.ttfb_ms or 0.0)
            stage_total.setdefault(stage, []).append(t.total_ms)
        first_audio_ms.append(done.first_audio_ms)
        eos_to_audio.append(endpoint_ms[-1] + done.first_audio_ms)
    table = Table(title=f"offline pipeline, {n} spoken turns (p50, ms)")
    for col in ("stage", "first byte p50", "total p50"):
        table.add_column(col)
    for stage in stage_total:
        table.add_row(stage, f"{p50(stage_ttfb[stage]):.1f}", f"{p50(stage_total[stage]):.1f}")
    table.add_row("endpointing (silence waited)", f"{p50(endpoint_ms):.0f}", "")
    table.add_row("turn start -> first audio", f"{p50(first_audio_ms):.1f}", "")
    table.add_row("end of speech -> first audio byte", f"{p50(eos_to_audio):.1f}", "")
    console.print(table)


def index_throughput(repeats: int) -> None:
    settings = load_settings()
    embedder = get_embedder(settings.embeddings)
    corpus = settings.rag.corpus_dir
    docs, _ = load_corpus(corpus)
    chunks = [c.text for d in docs for c in chunk_document(d, settings.rag.chunk_chars, settings.rag.overlap_chars)]
    model = embedder._model  # the raw SentenceTransformer, for the baseline
    ours, raw = [], []
    for _ in track(range(repeats), description="index build vs raw encode", console=console):
        t = time.perf_counter()
        model.encode(chunks, batch_size=settings.embeddings.batch_size, normalize_embeddings=True, show_progress_bar=False)
        raw.append(len(chunks) / (time.perf_counter() - t))
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            build_index(corpus, Path(tmp) / "idx", embedder, chunk_chars=settings.rag.chunk_chars, overlap_chars=settings.rag.overlap_chars)
            ours.append(len(chunks) / (time.perf_counter() - t))
    table = Table(title=f"index build throughput, {len(chunks)} chunks, {repeats} alternating runs")
    for col in ("", "chunks/s (median)"):
        table.add_column(col)
    table.add_row("raw SentenceTransformer.encode", f"{p50(raw):.0f}")
    table.add_row("samvad index build (load, chunk, embed, write)", f"{p50(ours):.0f}")
    table.add_row("ratio build / raw", f"{p50(ours) / p50(raw):.2f}")
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(turns(args.turns))
    index_throughput(args.repeats)


if __name__ == "__main__":
    main()
