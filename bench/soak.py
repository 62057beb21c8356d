"""The soak mode of bench/load.py: long load with faults on a schedule, then a database check.

HTTP users ask turns with an Idempotency-Key, retrying with the same key after any failure or
dropped connection (the client contract in the README); a share of turns opens a new session.
Every `fault_every` seconds one fault from the cycle strikes: a Sessions replica killed, a TTS
replica killed, an ingress replica killed, Redis stopped for 5 s, PostgreSQL stopped for 10 s.
Every 30 s it samples memory (PSS) of every process kind, errors and turn p95. At the end every
acknowledged turn is looked up: lost (acknowledged, but its question or answer row is missing)
and duplicated (one Idempotency-Key answered with two turns, or more rows than turns).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import httpx
import ray

from bench.bench_common import PORT, Graph, pct, processes_by_kind, pss_mib

QUESTIONS = [
    "How do I block my lost debit card?",
    "What is the UPI limit per day?",
    "How do I open a fixed deposit?",
    "Can I close my fixed deposit early?",
    "How do I reset my UPI PIN?",
]


@dataclass
class Soak:
    acknowledged: dict[str, tuple[str, str]] = field(default_factory=dict)  # idempotency key -> (session, turn)
    answers: dict[str, set[str]] = field(default_factory=dict)  # idempotency key -> turn ids answered
    window_ms: list[float] = field(default_factory=list)
    failures: int = 0  # attempts that failed (then retried)
    gave_up: int = 0  # turns never answered within the retry budget
    samples: list[tuple] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)


async def user(client: httpx.AsyncClient, stop_at: float, s: Soak, new_session_share: float) -> None:
    rng = random.Random()
    sid = (await client.post("/api/v1/sessions", json={})).json()["id"]
    while time.monotonic() < stop_at:
        key = uuid.uuid4().hex
        body = {"text": rng.choice(QUESTIONS), "speak": rng.random() < 0.5}
        if rng.random() >= new_session_share:
            body["session_id"] = sid
        t0 = time.perf_counter()
        for _ in range(60):  # the retry contract: same key, until it is answered
            try:
                r = await client.post("/api/v1/turn", json=body, headers={"Idempotency-Key": key})
                if r.status_code == 200:
                    out = r.json()
                    s.acknowledged[key] = (out["session_id"], out["turn_id"])
                    s.answers.setdefault(key, set()).add(out["turn_id"])
                    s.window_ms.append((time.perf_counter() - t0) * 1000)
                    if "session_id" not in body:
                        sid = out["session_id"]
                    break
                if r.status_code < 500 and r.status_code != 429:
                    raise AssertionError(f"unexpected {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError:
                pass
            s.failures += 1
            await asyncio.sleep(1.0)
        else:
            s.gave_up += 1
        # Every retry of an answered key must give the same turn back (sampled: 1 in 10).
        if key in s.acknowledged and rng.random() < 0.1:
            try:
                again = await client.post("/api/v1/turn", json=body, headers={"Idempotency-Key": key})
                if again.status_code == 200:
                    s.answers[key].add(again.json()["turn_id"])
            except httpx.HTTPError:
                pass


def _kill(deployment: str) -> str:
    names = sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::samvad#{deployment}#")
    )
    if not names:
        return f"no {deployment} replica to kill"
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return f"killed {deployment} replica"


async def faults(g: Graph, stop_at: float, every: float, s: Soak, start: float) -> None:
    from samvad.storage import embedded

    async def outage(stop, begin, seconds: float, what: str) -> str:
        await asyncio.to_thread(stop, g.data)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(begin, g.data)
        return f"{what} stopped {seconds:.0f} s"

    cycle = [
        lambda: asyncio.to_thread(_kill, "Sessions"),
        lambda: asyncio.to_thread(_kill, "TTS"),
        lambda: asyncio.to_thread(_kill, "Ingress"),
        lambda: outage(embedded.stop_redis, embedded.start_redis, 5, "Redis"),
        lambda: outage(embedded.stop_postgres, embedded.start_postgres, 10, "PostgreSQL"),
    ]
    i = 0
    while time.monotonic() + every < stop_at:
        await asyncio.sleep(every)
        what = await cycle[i % len(cycle)]()
        s.faults.append(f"t={time.monotonic() - start:4.0f}s {what}")
        i += 1


def memory_by_kind() -> dict[str, float]:
    return {kind: pss_mib(procs) for kind, procs in processes_by_kind().items()}


async def sampler(stop_at: float, s: Soak, start: float, period: float = 30.0) -> None:
    last_failures = 0
    while time.monotonic() < stop_at:
        await asyncio.sleep(min(period, max(0.1, stop_at - time.monotonic())))
        window, s.window_ms = s.window_ms, []
        s.samples.append(
            (
                time.monotonic() - start,
                await asyncio.to_thread(memory_by_kind),
                len(window),
                pct(window, 0.95) if window else float("nan"),
                s.failures - last_failures,
            )
        )
        last_failures = s.failures


async def check(dsn: str, s: Soak) -> tuple[int, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT session_id::text AS sid, turn_id, role FROM messages")
    finally:
        await conn.close()
    have: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        have.setdefault((r["sid"], r["turn_id"]), set()).add(r["role"])
    lost = sum(1 for sid, tid in s.acknowledged.values() if have.get((sid, tid)) != {"user", "assistant"})
    duplicated = sum(1 for turns in s.answers.values() if len(turns) > 1)
    # Rows of turns nobody was answered for are fine (a turn that failed with 503 may have stored
    # its question); rows beyond one question and one answer per turn cannot exist (unique key).
    return lost, duplicated


async def run(g: Graph, duration: float, users: int, fault_every: float, new_session_share: float) -> Soak:
    s = Soak()
    start = time.monotonic()
    stop_at = start + duration
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{PORT}",
        headers={"X-API-Key": g.key},
        timeout=60,
        limits=httpx.Limits(max_connections=users + 4),
    ) as client:
        s.samples.append((0.0, await asyncio.to_thread(memory_by_kind), 0, float("nan"), 0))
        await asyncio.gather(
            *(user(client, stop_at, s, new_session_share) for _ in range(users)),
            faults(g, stop_at, fault_every, s, start),
            sampler(stop_at, s, start),
        )
    return s
