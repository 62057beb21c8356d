"""Bounded load on the real Serve graph (loopback only; stops by itself after --duration).

HTTP users loop over a route mix (spoken REST turns, TTS, session reads, health) and WebSocket
users hold voice sessions sending a text question after each answer. Reports per route:
requests, errors, throughput, p50/p99 latency; and every change in replica counts that Serve's
autoscaler made while the load ran (serve_config.yaml's autoscaling settings).

    python -m bench.load [--duration 60] [--http-users 16] [--ws-users 4] [--config configs/stub.yaml]
    python -m bench.load --soak [--duration 600] [--http-users 8] [--fault-every 60]   # see bench/soak.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import httpx  # noqa: E402
import websockets  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.bench_common import PORT, pct, serve_up  # noqa: E402

console = Console()
QUESTIONS = [
    "How do I block my lost debit card?",
    "What is the UPI limit per day?",
    "How do I open a fixed deposit?",
    "Can I close my fixed deposit early?",
    "How do I reset my UPI PIN?",
]


class Results:
    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.codes: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, route: str, t0: float, ok: bool, code: int = 0) -> None:
        self.ms[route].append((time.perf_counter() - t0) * 1000)
        self.codes[route][code] += 1
        if not ok:
            self.errors[route] += 1


async def http_user(client: httpx.AsyncClient, sid: str, stop_at: float, r: Results) -> None:
    rng = random.Random(sid)
    while time.monotonic() < stop_at:
        pick = rng.random()
        if pick < 0.5:
            route, call = (
                "POST /api/v1/turn",
                client.post("/api/v1/turn", json={"session_id": sid, "text": rng.choice(QUESTIONS)}),
            )
        elif pick < 0.7:
            route, call = "POST /api/v1/tts", client.post("/api/v1/tts", json={"text": rng.choice(QUESTIONS)})
        elif pick < 0.9:
            route, call = "GET /api/v1/sessions/{id}", client.get(f"/api/v1/sessions/{sid}")
        else:
            route, call = "GET /healthz", client.get("/healthz")
        t0 = time.perf_counter()
        try:
            resp = await call
            r.add(route, t0, resp.status_code < 400, resp.status_code)
        except httpx.HTTPError:
            r.add(route, t0, False)


async def ws_user(key: str, stop_at: float, r: Results) -> None:
    route = "WS voice turn (text.input -> turn.done)"
    try:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{PORT}/api/v1/voice-session",
            additional_headers={"X-API-Key": key},
            max_size=None,
            open_timeout=60,
        )
        await ws.send(json.dumps({"type": "session.start", "language": "en-IN"}))
        assert json.loads(await ws.recv())["type"] == "session.started"
    except Exception:  # noqa: BLE001
        r.add("WS open", time.perf_counter(), False)
        return
    rng = random.Random()
    async with ws:
        while time.monotonic() < stop_at:
            t0, ok = time.perf_counter(), True
            try:
                await ws.send(json.dumps({"type": "text.input", "text": rng.choice(QUESTIONS)}))
                while True:
                    ev = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    ok = ok and ev["type"] != "error"
                    if ev["type"] in ("turn.done", "error"):
                        break
            except Exception:  # noqa: BLE001
                r.add(route, t0, False)
                return
            r.add(route, t0, ok)


def replica_counts() -> dict[str, int]:
    from ray import serve

    app = serve.status().applications.get("samvad")
    if app is None:
        return {}
    return {name: d.replica_states.get("RUNNING", 0) for name, d in app.deployments.items()}


async def run(key: str, duration: float, http_users: int, ws_users: int) -> tuple[Results, list[str], float]:
    r = Results()
    events: list[str] = []
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{PORT}",
        headers={"X-API-Key": key},
        timeout=120,
        limits=httpx.Limits(max_connections=http_users + 4),
    ) as client:
        sids = [(await client.post("/api/v1/sessions", json={})).json()["id"] for _ in range(http_users)]
        start = time.monotonic()
        stop_at = start + duration
        tasks = [asyncio.create_task(http_user(client, sid, stop_at, r)) for sid in sids]
        tasks += [asyncio.create_task(ws_user(key, stop_at, r)) for _ in range(ws_users)]
        last = await asyncio.to_thread(replica_counts)
        with Progress(console=console) as progress:
            bar = progress.add_task(f"{http_users} HTTP + {ws_users} WebSocket users", total=duration)
            while time.monotonic() < stop_at:
                await asyncio.sleep(1.0)
                now = await asyncio.to_thread(replica_counts)
                for name in sorted(now):
                    if now[name] != last.get(name):
                        events.append(
                            f"t={time.monotonic() - start:5.1f}s {name}: {last.get(name)} -> {now[name]} replicas"
                        )
                last = now
                progress.update(bar, completed=min(duration, time.monotonic() - start))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    return r, events, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--http-users", type=int, default=16)
    ap.add_argument("--ws-users", type=int, default=4)
    ap.add_argument("--config", default=str(ROOT / "configs" / "stub.yaml"))
    ap.add_argument(
        "--ingress-target",
        type=int,
        default=None,
        help="override the ingress autoscaling target_ongoing_requests (and react in 5 s) to watch it scale",
    )
    ap.add_argument("--soak", action="store_true", help="long run with faults on a schedule and a database check")
    ap.add_argument("--fault-every", type=float, default=60.0, help="soak: seconds between faults")
    ap.add_argument("--new-session-share", type=float, default=0.2, help="soak: share of turns that open a session")
    args = ap.parse_args()
    if args.soak:
        return soak_main(args)
    # One client IP for every simulated user: measure the service, not the per-IP limit.
    os.environ["SAMVAD_LIMITS__IP_REQUESTS_PER_MINUTE"] = "100000000"
    options = {}
    if args.ingress_target is not None:
        from deployments.serve_config import deployment_options

        ingress = deployment_options(str(ROOT / "serve_config.yaml"))["Ingress"]
        options["Ingress"] = ingress | {
            "autoscaling_config": ingress["autoscaling_config"]
            | {"target_ongoing_requests": args.ingress_target, "upscale_delay_s": 5, "downscale_delay_s": 30}
        }
    key, down = serve_up(args.config, options)
    try:
        r, events, elapsed = asyncio.run(run(key, args.duration, args.http_users, args.ws_users))
        final = replica_counts()
    finally:
        down()
    t = Table(
        title=f"load: {args.http_users} HTTP + {args.ws_users} WebSocket users for {elapsed:.0f} s, "
        f"{Path(args.config).name} (ms)"
    )
    for c in ("route", "requests", "errors", "req/s", "p50", "p99", "status codes"):
        t.add_column(c)
    for route in sorted(r.ms):
        ms = r.ms[route]
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(r.codes[route].items()) if k)
        t.add_row(
            route,
            str(len(ms)),
            str(r.errors[route]),
            f"{len(ms) / elapsed:.1f}",
            f"{pct(ms, 0.5):.0f}",
            f"{pct(ms, 0.99):.0f}",
            codes,
        )
    total = sum(len(v) for v in r.ms.values())
    t.add_row("all", str(total), str(sum(r.errors.values())), f"{total / elapsed:.1f}", "", "", "")
    console.print(t)
    console.print("autoscaling events:" if events else "autoscaling events: none (replica counts did not change)")
    for e in events:
        console.print("  " + e)
    console.print(f"replicas at the end: {final}")


def soak_main(args) -> None:
    import soak

    g = serve_up(args.config, graph=True)
    try:
        s = asyncio.run(soak.run(g, args.duration, args.http_users, args.fault_every, args.new_session_share))
        lost, duplicated = asyncio.run(soak.check(g.dsn, s))
    finally:
        g.down()
    kinds = sorted({k for _, mem, *_ in s.samples for k in mem})
    t = Table(
        title=f"soak: {args.http_users} users (Idempotency-Key retries), {args.duration:.0f} s, a fault every "
        f"{args.fault_every:.0f} s, {args.new_session_share:.0%} new sessions; memory PSS MiB by process kind"
    )
    for c in ["t (s)", *kinds, "turns in window", "turn p95 ms", "failed attempts"]:
        t.add_column(c)
    for at, mem, n, p95, failed in s.samples:
        t.add_row(f"{at:.0f}", *(f"{mem.get(k, 0):.0f}" for k in kinds), str(n), f"{p95:.0f}", str(failed))
    console.print(t)
    for f in s.faults:
        console.print("  " + f)
    console.print(
        f"acknowledged turns: {len(s.acknowledged)}; never answered within the retry budget: {s.gave_up}; "
        f"lost: {lost}; duplicated: {duplicated}"
    )


if __name__ == "__main__":
    main()
