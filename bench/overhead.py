"""What Ray Serve costs per turn: the same turn with zero-cost stub engines (configs/stub.yaml)
run (a) in one process through the core TurnRunner and (b) through the Ray Serve graph over
HTTP (proxy -> ingress -> the conversation's Sessions replica -> stage deployments, PostgreSQL),
side by side in one run, at concurrency 1 and 16, with the cross-process calls (Serve requests,
from Serve's own router counters) per turn. Loopback only; bounded request counts.

    python -m bench.overhead [--requests 200] [--modes proxy,proxy-app-env,haproxy] [--throughput-optimized]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from bench.bench_common import BENCH_ENV, metrics_text, serve_requests  # noqa: E402

for _k, _v in BENCH_ENV.items():
    os.environ.setdefault(_k, _v)

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


async def over_serve(
    requests: int, progress: Progress, dsn: str, redis_url: str, mode: str
) -> tuple[dict[int, list[float]], dict[str, float]]:
    from samvad.settings import load_settings, secret
    from samvad.storage.repository import Repository

    repo = await Repository.connect(dsn, secret(load_settings(CONFIG).service, "key"), max_size=1)
    _, key = await repo.create_key("bench")
    await repo.close()
    out = {}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{PORT}", headers={"X-API-Key": key}, timeout=120
    ) as client:
        sessions = [(await client.post("/api/v1/sessions", json={})).json()["id"] for _ in range(16)]

        async def one(i: int) -> None:
            r = await client.post(
                "/api/v1/turn", json={"session_id": sessions[i % 16], "text": "what is the stub answer"}
            )
            r.raise_for_status()

        hops: dict[str, float] = {}
        for c in (1, 16):
            before = serve_requests(text=await metrics_text(client)) if c == 1 else None
            out[c] = await measure(one, requests, c, progress, f"Serve ({mode}) over HTTP c={c}")
            if before is not None:
                after = serve_requests(text=await metrics_text(client))
                turns = requests + min(8, requests)  # the warm-up turns count too
                hops = {d: (after.get(d, 0) - before.get(d, 0)) / turns for d in after}
    return out, hops


# Serve's ingress modes: HAProxy in front of ingress replicas that serve HTTP themselves (Ray's
# direct ingress; deployments/haproxy.py; the default), or its Python proxy.
# proxy-app-env: the Serve settings of serve_config.yaml only in the app's runtime_env, as the
# starters gave them before they also exported them into the environment before importing Ray
# (deployments.serve_config.export_node_env): the proxy, and the handles the driver builds,
# then run on Serve's defaults.
MODES = {"proxy": "proxy", "proxy-app-env": "proxy", "haproxy": "haproxy"}


def one_mode(mode: str, requests: int, dsn: str, redis_url: str, throughput_optimized: bool):
    """One mode in a fresh interpreter (spawned): Serve reads its settings when it is imported."""
    from deployments.serve_config import deployment_options, export_node_env, replica_env

    serve_config = str(ROOT / "serve_config.yaml")
    from deployments.haproxy import ingress_env

    mode_env = ingress_env(MODES[mode], isolated=True)
    os.environ.update(mode_env)
    if throughput_optimized:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    if mode == "proxy-app-env":  # this process inherited them from bench_common: take them back out
        for name in replica_env(serve_config):
            os.environ.pop(name, None)
    env = (replica_env(serve_config) if mode == "proxy-app-env" else export_node_env(serve_config)) | mode_env

    import ray
    from ray import serve

    from deployments.app import build_app

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace="samvad",
        log_to_driver=False,
        runtime_env={"env_vars": env | {"PYTHONPATH": str(ROOT)}},
        _system_config={"metrics_report_interval_ms": 1000},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(
        build_app(
            {
                "config": CONFIG,
                "database_url": dsn,
                "redis_url": redis_url,
                "deployment_options": deployment_options(serve_config),
            }
        ),
        name="samvad",
        route_prefix="/",
    )
    try:
        with Progress(console=console) as progress:
            return asyncio.run(over_serve(requests, progress, dsn, redis_url, mode))
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument(
        "--modes", default="haproxy", help="Serve ingress modes to compare in this run: haproxy,proxy,proxy-app-env"
    )
    ap.add_argument("--throughput-optimized", action="store_true", help="RAY_SERVE_THROUGHPUT_OPTIMIZED=1")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every Ray process of the run (e.g. one Serve setting)",
    )
    args = ap.parse_args()
    for pair in args.env:
        name, _, value = pair.partition("=")
        os.environ[name] = value
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from samvad.storage import embedded

    data = Path(tempfile.mkdtemp(prefix="samvad-bench-"))
    dsn = os.environ.get("SAMVAD_DATABASE_URL") or embedded.start_postgres(data)
    redis_url = os.environ.get("SAMVAD_REDIS_URL") or embedded.start_redis(data)
    remote, hops = {}, {}
    with Progress(console=console) as progress:
        local = asyncio.run(in_process(args.requests, progress))
    for mode in args.modes.split(","):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            remote[mode], hops[mode] = pool.submit(
                one_mode, mode, args.requests, dsn, redis_url, args.throughput_optimized
            ).result()
    if "SAMVAD_REDIS_URL" not in os.environ:
        embedded.stop_redis(data)
    if "SAMVAD_DATABASE_URL" not in os.environ:
        embedded.stop_postgres(data)
    extra = ", throughput-optimized" if args.throughput_optimized else ""
    table = Table(title=f"one stub turn, {args.requests} requests per row{extra} (ms)")
    for col in (
        "Serve ingress",
        "concurrency",
        "in-process p50",
        "p99",
        "Serve/HTTP p50",
        "p99",
        "ratio p50",
        "Serve turns/s",
        "Serve - in-process p50",
    ):
        table.add_column(col)
    for mode, runs in remote.items():
        for c in (1, 16):
            a, b = local[c], runs[c]
            throughput = len(b) / (sum(b) / 1000 / c)  # completed turns per second of wall time
            table.add_row(
                mode,
                str(c),
                f"{statistics.median(a):.2f}",
                f"{pct(a, 0.99):.2f}",
                f"{statistics.median(b):.1f}",
                f"{pct(b, 0.99):.1f}",
                f"{statistics.median(b) / statistics.median(a):.0f}x",
                f"{throughput:.0f}",
                f"{statistics.median(b) - statistics.median(a):.1f}",
            )
    console.print(table)
    hop_table = Table(title="cross-process calls per REST turn (Serve requests by deployment, c=1 run)")
    for col in ("Serve ingress", "deployment", "calls per turn"):
        hop_table.add_column(col)
    for mode, by_deployment in hops.items():
        for d, n in sorted(by_deployment.items(), key=lambda kv: -kv[1]):
            if n > 0.005:
                hop_table.add_row(mode, d, f"{n:.2f}")
        hop_table.add_row(mode, "total", f"{sum(by_deployment.values()):.2f}")
    console.print(hop_table)


if __name__ == "__main__":
    main()
