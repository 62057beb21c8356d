"""How many conversations one box holds, and what one costs: N sessions opened, each answering
one turn (stub engines), all still held in memory by their Sessions replicas (not passivated);
memory of every process kind before and after, per conversation; session-open latency.
Loopback only, bounded.

    python -m bench.conversations [--conversations 10000] [--concurrency 16] [--ingress haproxy|proxy]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.bench_common import PORT, pct, processes_by_kind, pss_mib, serve_up  # noqa: E402

console = Console()


def memory_by_kind() -> dict[str, tuple[int, float]]:
    """(processes, PSS MiB) of Ray's worker processes by kind."""
    return {kind: (len(procs), pss_mib(procs)) for kind, procs in processes_by_kind().items()}


# Conversations one API key may hold open: the service's default cap. The box's conversations are
# spread over as many tenants as that takes, so each open pays the cap check a real key pays (the
# benchmark environment otherwise lifts the cap, and one key's count then grows with the box).
PER_KEY = 1000


async def tenant_keys(dsn: str, n: int) -> list[str]:
    from samvad.settings import load_settings, secret
    from samvad.storage.repository import Repository

    repo = await Repository.connect(
        dsn, secret(load_settings(str(ROOT / "configs" / "stub.yaml")).service, "key"), max_size=1
    )
    try:
        return [
            (await repo.create_key(f"tenant-{i}", requests_per_minute=10_000_000, max_open_sessions=PER_KEY))[1]
            for i in range(-(-n // PER_KEY))
        ]
    finally:
        await repo.close()


async def run(n: int, concurrency: int, dsn: str) -> None:
    import asyncpg

    keys = await tenant_keys(dsn, n)
    before = memory_by_kind()
    sem = asyncio.Semaphore(concurrency)
    opens: list[float] = []
    turns_ms: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", timeout=120) as client:
        with Progress(console=console) as progress:
            # Opening is measured alone, one at a time: what a caller waits for.
            opening = progress.add_task("open (one at a time)", total=n)
            ids = []
            for i in range(n):
                key = keys[i // PER_KEY]
                t = time.perf_counter()
                r = await client.post("/api/v1/sessions", json={}, headers={"X-API-Key": key})
                opens.append((time.perf_counter() - t) * 1000)
                if r.status_code == 201:
                    ids.append((key, r.json()["id"]))
                else:
                    errors += 1
                progress.advance(opening)
            answering = progress.add_task(f"one turn each ({concurrency} at a time)", total=len(ids))

            async def conversation(key: str, sid: str) -> None:
                nonlocal errors
                async with sem:
                    t = time.perf_counter()
                    r = await client.post(
                        "/api/v1/turn",
                        json={"session_id": sid, "text": "what is the stub answer", "speak": False},
                        headers={"X-API-Key": key},
                    )
                    turns_ms.append((time.perf_counter() - t) * 1000)
                    errors += r.status_code != 200
                    progress.advance(answering)

            started = time.perf_counter()
            await asyncio.gather(*(conversation(key, sid) for key, sid in ids))
            elapsed = time.perf_counter() - started
    await asyncio.sleep(2)
    after = memory_by_kind()
    conn = await asyncpg.connect(dsn)
    try:
        held = await conn.fetchval("SELECT count(*) FROM sessions WHERE owner IS NOT NULL")
    finally:
        await conn.close()
    t = Table(
        title=f"{n} conversations of {len(keys)} API keys (each capped at {PER_KEY} open), each answered "
        f"one turn (stub engines, concurrency {concurrency})"
    )
    for col in ("figure", "value"):
        t.add_column(col)
    t.add_row("held in memory by their hosts (owned, not passivated)", str(held))
    t.add_row("errors", str(errors))
    t.add_row("session open p50 / p95 (ms, one at a time)", f"{pct(opens, 0.5):.1f} / {pct(opens, 0.95):.1f}")
    t.add_row("turn p50 / p95 (ms)", f"{pct(turns_ms, 0.5):.1f} / {pct(turns_ms, 0.95):.1f}")
    t.add_row(f"turns per second ({concurrency} at a time)", f"{n / elapsed:.0f}")
    console.print(t)
    m = Table(title="memory (PSS) by process kind, before and after")
    for col in ("kind", "processes", "before MiB", "after MiB", "grown MiB", "per conversation KiB"):
        m.add_column(col)
    for kind in sorted(set(before) | set(after)):
        b, a = before.get(kind, (0, 0.0)), after.get(kind, (0, 0.0))
        m.add_row(
            kind,
            str(a[0]),
            f"{b[1]:.0f}",
            f"{a[1]:.0f}",
            f"{a[1] - b[1]:.0f}",
            f"{(a[1] - b[1]) * 1024 / max(held, 1):.1f}",
        )
    console.print(m)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--ingress", default="haproxy", help="Serve's ingress: haproxy or proxy (deployments/haproxy.py)")
    args = ap.parse_args()
    g = serve_up(str(ROOT / "configs" / "stub.yaml"), graph=True, ingress=args.ingress)
    try:
        asyncio.run(run(args.conversations, args.concurrency, g.dsn))
    finally:
        g.down()


if __name__ == "__main__":
    main()
