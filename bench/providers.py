"""Cloud provider clients against the local fake server (loopback, bounded):
(1) cache hit vs miss latency for TTS and translation, side by side (ratio);
(2) per-call client overhead: Samvad's client vs the official Sarvam SDK on the same endpoint.

    python -m bench.providers [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from rich.console import Console  # noqa: E402
from rich.progress import track  # noqa: E402
from rich.table import Table  # noqa: E402

from samvad.providers.base import SpeechRequest, TranslationRequest  # noqa: E402
from samvad.providers.cached import CachedTranslator, CachedTTS  # noqa: E402
from samvad.providers.sarvam.config import SarvamSettings  # noqa: E402
from samvad.providers.sarvam.translate import SarvamTranslator  # noqa: E402
from samvad.providers.sarvam.tts import SarvamTTS  # noqa: E402
from samvad.storage import embedded  # noqa: E402
from samvad.storage.cache import Cache  # noqa: E402
from testkit.provider_server import SARVAM_KEY, FakeServer  # noqa: E402

console = Console()


def ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def cache_bench(url: str, redis_url: str, calls: int) -> list[tuple[str, float, float]]:
    s = SarvamSettings(base_url=url, api_key=SARVAM_KEY)
    cache = Cache(redis_url, {"tts": 600, "translation": 600})
    tts, tr = CachedTTS(SarvamTTS(s), cache), CachedTranslator(SarvamTranslator(s), cache)
    rows = []
    for name, run in (
        ("tts (one sentence)", lambda text: _drain(tts.stream(SpeechRequest(text=text, language="hi-IN"), []))),
        (
            "translation",
            lambda text: tr.translate(
                TranslationRequest(text=text, source_language="en-IN", target_language="hi-IN"), []
            ),
        ),
    ):
        miss, hit = [], []
        for _ in track(range(calls), description=f"cache {name}", console=console):
            text = f"Your request {uuid.uuid4().hex[:8]} has been registered."
            t = time.perf_counter()
            await run(text)
            miss.append(time.perf_counter() - t)
            t = time.perf_counter()
            await run(text)
            hit.append(time.perf_counter() - t)
        rows.append((name, ms(miss), ms(hit)))
    await cache.close()
    return rows


async def _drain(stream) -> None:
    async for _ in stream:
        pass


async def sdk_bench(url: str, calls: int) -> tuple[float, float]:
    from sarvamai import AsyncSarvamAI
    from sarvamai.environment import SarvamAIEnvironment

    ours = SarvamTranslator(SarvamSettings(base_url=url, api_key=SARVAM_KEY))
    sdk = AsyncSarvamAI(
        api_subscription_key=SARVAM_KEY, environment=SarvamAIEnvironment(base=url, creative=url, production=url)
    )
    a, b = [], []
    for _ in track(range(calls), description="client vs SDK (translate)", console=console):
        for fn, out in (
            (
                lambda: ours.translate(
                    TranslationRequest(text="Hello.", source_language="en-IN", target_language="hi-IN"), []
                ),
                a,
            ),
            (lambda: sdk.text.translate(input="Hello.", source_language_code="en-IN", target_language_code="hi-IN"), b),
        ):
            t = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - t)
    return ms(a), ms(b)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    fake = FakeServer().start()
    data = Path(tempfile.mkdtemp(prefix="samvad-bench-"))
    redis_url = embedded.start_redis(data)
    try:
        rows = asyncio.run(cache_bench(fake.url, redis_url, args.calls))
        ours, sdk = asyncio.run(sdk_bench(fake.url, args.calls))
    finally:
        embedded.stop_redis(data)
        fake.stop()
    t = Table(title=f"Redis cache against the fake Sarvam, p50 over {args.calls} calls (ms)")
    for c in ("call", "miss", "hit", "miss / hit"):
        t.add_column(c)
    for name, miss, hit in rows:
        t.add_row(name, f"{miss:.2f}", f"{hit:.2f}", f"{miss / hit:.1f}x")
    console.print(t)
    t = Table(title="per-call client cost, same fake endpoint, alternating calls (p50 ms)")
    for c in ("Samvad SarvamTranslator", "sarvamai AsyncSarvamAI", "ours / SDK"):
        t.add_column(c)
    t.add_row(f"{ours:.2f}", f"{sdk:.2f}", f"{ours / sdk:.2f}")
    console.print(t)


if __name__ == "__main__":
    main()
