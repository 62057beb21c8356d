"""What Ray Serve costs per turn: the same turn with zero-cost stub engines (configs/stub.yaml)
run (a) in one process through the core TurnRunner and (b) through the Ray Serve graph over
HTTP (ingress -> session actor -> stage deployments -> Store -> PostgreSQL), side by side in one
run, at concurrency 1 and 16. Loopback only; bounded request counts.

    python bench/overhead.py [--requests 200] [--throughput-optimized]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

CONFIG = str(ROOT / "configs" / "stub.yaml")
PORT = 8799
console = Console()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def measure(one_turn, requests: int, concurrency: int, progress: Progress, label: str) -> list[float]:
    task = progress.add_task(label, total=requests)
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def go(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            await one_turn(i)
            latencies.append((time.perf_counter() - t) * 1000)
            progress.advance(task)

    for i in range(min(8, requests)):  # warm-up, not counted
        await one_turn(-i - 1)
    await asyncio.gather(*(go(i) for i in range(requests)))
    return latencies


async def in_process(requests: int, progress: Progress) -> dict[int, list[float]]:
    from rag_index.pipeline import local_runner
    from samvad.settings import load_settings
    from samvad.turn import TurnRequest

    runner = local_runner(load_settings(CONFIG))

    async def one(i: int) -> None:
        async for _ in runner.run(TurnRequest(turn_id=str(i), text="what is the stub answer")):
            pass

    return {c: await measure(one, requests, c, progress, f"in-process c={c}") for c in (1, 16)}


async def over_serve(requests: int, progress: Progress, dsn: str, redis_url: str) -> dict[int, list[float]]:
    from samvad.storage.repository import Repository
    from samvad.settings import load_settings

    repo = await Repository.connect(dsn, load_settings(CONFIG).service.key_secret, max_size=1)
    _, key = await repo.create_key("bench")
    await repo.close()
    out = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", headers={"X-API-Key": key}, timeout=120) as client:
        sessions = [(await client.post("/api/v1/sessions", json={})).json()["id"] for _ in range(16)]

        async def one(i: int) -> None:
            r = await client.post("/api/v1/turn", json={"session_id": sessions[i % 16], "text": "what is the stub answer"})
            r.raise_for_status()

        for c in (1, 16):
            out[c] = await measure(one, requests, c, progress, f"Serve over HTTP c={c}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--throughput-optimized", action="store_true", help="RAY_SERVE_THROUGHPUT_OPTIMIZED=1")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.throughput_optimized:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"

    import ray
    from ray import serve

    from deployments.app import build_app, deployment_options
    from samvad.storage import embedded

    data = Path(tempfile.mkdtemp(prefix="samvad-bench-"))
    dsn = os.environ.get("SAMVAD_DATABASE_URL") or embedded.start_postgres(data)
    redis_url = os.environ.get("SAMVAD_REDIS_URL") or embedded.start_redis(data)
    with Progress(console=console) as progress:
        local = asyncio.run(in_process(args.requests, progress))
        ray.init(num_cpus=2, include_dashboard=False, namespace="samvad", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        serve.start(http_options={"host": "127.0.0.1", "port": PORT})
        serve.run(build_app({"config": CONFIG, "database_url": dsn, "redis_url": redis_url,
                             "deployment_options": deployment_options(str(ROOT / "serve_config.yaml"))}),
                  name="samvad", route_prefix="/")
        try:
            remote = asyncio.run(over_serve(args.requests, progress, dsn, redis_url))
        finally:
            serve.shutdown()
            ray.shutdown()
            if "SAMVAD_REDIS_URL" not in os.environ:
                embedded.stop_redis(data)
            if "SAMVAD_DATABASE_URL" not in os.environ:
                embedded.stop_postgres(data)
    mode = "throughput-optimized" if args.throughput_optimized else "default"
    table = Table(title=f"one stub turn, {args.requests} requests per row, Serve {mode} (ms)")
    for col in ("concurrency", "in-process p50", "p99", "Serve/HTTP p50", "p99", "ratio p50", "Serve turns/s"):
        table.add_column(col)
    for c in (1, 16):
        a, b = local[c], remote[c]
        throughput = len(b) / (sum(b) / 1000 / c)
        table.add_row(str(c), f"{statistics.median(a):.2f}", f"{pct(a, 0.99):.2f}", f"{statistics.median(b):.1f}",
                      f"{pct(b, 0.99):.1f}", f"{statistics.median(b) / statistics.median(a):.0f}x", f"{throughput:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
