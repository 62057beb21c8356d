"""Small helpers shared by the e2e tests."""

from __future__ import annotations

import time
import uuid

from samvad.settings import load_settings, secret
from samvad.storage.repository import Repository
from testkit import aio
from tests.graph import ADMIN_KEY


def make_key(
    dsn: str, name: str, requests_per_minute: int | None = None, max_voice_sessions: int | None = None, **limits
) -> str:
    """A new API key; `limits`: max_open_sessions, sessions_per_minute (None: the service's)."""

    async def make():
        repo = await Repository.connect(dsn, secret(load_settings().service, "key"), max_size=1)
        try:
            return (await repo.create_key(name, requests_per_minute, max_voice_sessions, **limits))[1]
        finally:
            await repo.close()

    return aio.run(make)


def count_messages(db, sid: str, role: str | None = None) -> int:
    if role is None:
        return db("SELECT count(*) AS n FROM messages WHERE session_id = $1", uuid.UUID(sid))[0]["n"]
    return db("SELECT count(*) AS n FROM messages WHERE session_id = $1 AND role = $2", uuid.UUID(sid), role)[0]["n"]


def metric_lines(client, family: str, *labels: str, timeout: float = 30.0) -> list[str]:
    """Lines of `family` at /metrics carrying every one of `labels` (e.g. 'result="hit"'),
    polled: Ray's agent exports what the processes record about once a second."""
    deadline = time.monotonic() + timeout
    while True:
        text = client.get("/metrics", headers={"X-Admin-Key": ADMIN_KEY}).text  # an operations route
        lines = [
            line
            for line in text.splitlines()
            if line.startswith(family + "{") and all(label in line for label in labels)
        ]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(1.0)


def host_of(db, sid: str) -> str | None:
    """The Ray actor name of the Sessions replica that owns a conversation (its lease holder)."""
    rows = db("SELECT owner FROM sessions WHERE id = $1", uuid.UUID(sid))
    owner = rows[0]["owner"] if rows else None
    return None if owner is None else f"SERVE_REPLICA::samvad#Sessions#{owner.rsplit('-', 1)[0]}"


def kill_host_of(db, sid: str) -> str:
    import ray

    name = host_of(db, sid)
    assert name is not None, "the conversation has no owner"
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name
