"""What the Serve benchmarks share: the real graph started in this process on embedded
PostgreSQL and Redis in a temp folder (loopback only), and an API key for it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORT = 8798
# Tables keep every column whole when the output goes to a file, not a terminal (rich reads this).
os.environ.setdefault("COLUMNS", "160")
# A benchmark's service is throwaway: its own secrets (there are no defaults), and the abuse
# limits meant for strangers (per-IP sockets, session creation) lifted: every caller here is
# one local address measuring the machine.
BENCH_ENV = {
    "SAMVAD_SERVICE__KEY_SECRET": secrets.token_urlsafe(32),
    "SAMVAD_SERVICE__RESUME_SECRET": secrets.token_urlsafe(32),
    "SAMVAD_SERVICE__PHONE_SECRET": secrets.token_urlsafe(32),
    "SAMVAD_LIMITS__IP_REQUESTS_PER_MINUTE": "1000000000",
    "SAMVAD_LIMITS__SESSIONS_PER_MINUTE": "1000000000",
    "SAMVAD_LIMITS__MAX_OPEN_SESSIONS": "1000000000",
    "SAMVAD_LIMITS__MAX_SOCKETS_PER_IP": "1000000",
}
for _k, _v in BENCH_ENV.items():
    os.environ.setdefault(_k, _v)
# serve_config.yaml's Serve settings, before a benchmark imports Ray (as `samvad run` does);
# SAMVAD_BENCH_APP_ENV_ONLY=1 leaves them to the app's runtime_env only, as starters did before.
from deployments.serve_config import export_node_env  # noqa: E402

if os.environ.get("SAMVAD_BENCH_APP_ENV_ONLY") != "1":
    export_node_env(str(ROOT / "serve_config.yaml"))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))] if s else float("nan")


@dataclass
class Graph:
    key: str
    down: Callable[[], None]
    dsn: str
    data: Path  # the embedded PostgreSQL and Redis live here (stop/start them for faults)


def serve_up(config: str, options: dict | None = None, *, graph: bool = False, ingress: str = "haproxy"):
    """Start the graph with serve_config.yaml's deployment options (`options` override them by
    deployment) behind Serve's `ingress` (haproxy or proxy, deployments/haproxy.py); returns
    (API key, a function that stops everything), or a `Graph` with `graph=True`. Every request
    comes from 127.0.0.1: the per-IP limit is lifted so the machine is measured."""
    from deployments.haproxy import ingress_env

    mode_env = ingress_env(ingress, isolated=True)
    os.environ.update(mode_env)  # before Ray is imported: Serve reads it then
    import ray
    from ray import serve

    from deployments.app import build_app
    from deployments.serve_config import deployment_options, replica_env
    from samvad.settings import load_settings, secret
    from samvad.storage import embedded
    from samvad.storage.repository import Repository
    from testkit import ray_local

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    data = Path(tempfile.mkdtemp(prefix="samvad-bench-"))
    dsn, redis_url = embedded.start_postgres(data), embedded.start_redis(data)
    ray_local.start(replica_env(str(ROOT / "serve_config.yaml")) | mode_env)
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(
        build_app(
            {
                "config": config,
                "database_url": dsn,
                "redis_url": redis_url,
                "deployment_options": deployment_options(str(ROOT / "serve_config.yaml")) | (options or {}),
            }
        ),
        name="samvad",
        route_prefix="/",
    )

    async def key():
        repo = await Repository.connect(dsn, secret(load_settings(config).service, "key"), max_size=1)
        try:
            return (await repo.create_key("bench", requests_per_minute=10_000_000, max_voice_sessions=100_000))[1]
        finally:
            await repo.close()

    def down():
        serve.shutdown()
        ray.shutdown()
        embedded.stop_redis(data)
        embedded.stop_postgres(data)

    made = asyncio.run(key())
    return Graph(made, down, dsn, data) if graph else (made, down)


def serve_requests(text: str) -> dict[str, float]:
    """Serve requests routed so far, by deployment (from the relayed router counters)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ray_serve_num_router_requests_total{") and 'application="samvad"' in line:
            deployment = line.split('deployment="')[1].split('"')[0]
            out[deployment] = out.get(deployment, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


async def metrics_text(client) -> str:
    await asyncio.sleep(2.5)  # Ray's agent exports what the processes record about once a second
    return (await client.get("/metrics")).text


def processes_by_kind() -> dict[str, list]:
    """Ray's worker processes on this node by kind, from their titles (`ray::ServeReplica:samvad:
    Ingress`, `ray::ProxyActor`, ...): proxy, ingress, sessions, stages, other Ray; and HAProxy
    (Serve's HAProxy ingress mode) as proxy."""
    import psutil

    kinds: dict[str, list] = {}
    for p in psutil.process_iter(["cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        if "haproxy" in title.split(" ")[0]:
            kinds.setdefault("proxy", []).append(p)
            continue
        if not title.startswith("ray::"):
            continue
        kind = (
            "proxy"
            if "ProxyActor" in title
            else "ingress"
            if ":Ingress" in title
            else "sessions"
            if ":Sessions" in title
            else "stages"
            if "ServeReplica" in title
            else "ray other"
        )
        kinds.setdefault(kind, []).append(p)
    return kinds


def pss_mib(processes: list) -> float:
    """Proportional set size of `processes` together (shared pages counted once), in MiB."""
    import psutil

    total = 0.0
    for p in processes:
        try:
            total += p.memory_full_info().pss / 2**20
        except psutil.NoSuchProcess:
            pass
    return total


@contextlib.contextmanager
def environment(overrides: dict[str, str]) -> Iterator[None]:
    """`overrides` in os.environ for the block (settings read them: SAMVAD_…), restored after."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
