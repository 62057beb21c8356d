"""How many conversations one box holds, and what one costs: N sessions opened, each answering
one turn (stub engines), all still held in memory by their Sessions replicas (not passivated);
memory of every process kind before and after, per conversation; session-open latency.
Loopback only, bounded.

    python bench/conversations.py [--conversations 10000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from bench_common import PORT, pct, processes_by_kind, pss_mib, serve_up  # noqa: E402

console = Console()


def memory_by_kind() -> dict[str, tuple[int, float]]:
    """(processes, PSS MiB) of Ray's worker processes by kind."""
    return {kind: (len(procs), pss_mib(procs)) for kind, procs in processes_by_kind().items()}


async def run(key: str, n: int, concurrency: int, dsn: str) -> None:
    import asyncpg

    before = memory_by_kind()
    sem = asyncio.Semaphore(concurrency)
    opens: list[float] = []
    turns_ms: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", headers={"X-API-Key": key}, timeout=120) as client:
        with Progress(console=console) as progress:
            # Opening is measured alone, one at a time: what a caller waits for.
            opening = progress.add_task("open (one at a time)", total=n)
            ids = []
            for _ in range(n):
                t = time.perf_counter()
                r = await client.post("/api/v1/sessions", json={})
                opens.append((time.perf_counter() - t) * 1000)
                if r.status_code == 201:
                    ids.append(r.json()["id"])
                else:
                    errors += 1
                progress.advance(opening)
            answering = progress.add_task(f"one turn each ({concurrency} at a time)", total=len(ids))

            async def conversation(sid: str) -> None:
                nonlocal errors
                async with sem:
                    t = time.perf_counter()
                    r = await client.post("/api/v1/turn", json={"session_id": sid, "text": "what is the stub answer",
                                                                 "speak": False})
                    turns_ms.append((time.perf_counter() - t) * 1000)
                    errors += r.status_code != 200
                    progress.advance(answering)

            started = time.perf_counter()
            await asyncio.gather(*(conversation(sid) for sid in ids))
            elapsed = time.perf_counter() - started
    await asyncio.sleep(2)
    after = memory_by_kind()
    conn = await asyncpg.connect(dsn)
    try:
        held = await conn.fetchval("SELECT count(*) FROM sessions WHERE owner IS NOT NULL")
    finally:
        await conn.close()
    t = Table(title=f"{n} conversations, each answered one turn (stub engines, concurrency {concurrency})")
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
        m.add_row(kind, str(a[0]), f"{b[1]:.0f}", f"{a[1]:.0f}", f"{a[1] - b[1]:.0f}", f"{(a[1] - b[1]) * 1024 / max(held, 1):.1f}")
    console.print(m)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    g = serve_up(str(ROOT / "configs" / "stub.yaml"), graph=True)
    try:
        asyncio.run(run(g.key, args.conversations, args.concurrency, g.dsn))
    finally:
        g.down()


if __name__ == "__main__":
    main()
