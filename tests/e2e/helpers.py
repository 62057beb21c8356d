"""Small helpers shared by the e2e tests."""

from __future__ import annotations

import uuid

from samvad.settings import load_settings
from samvad.storage.repository import Repository
from tests import aio


def make_key(dsn: str, name: str, requests_per_minute: int | None = None, max_voice_sessions: int | None = None) -> str:
    async def make():
        repo = await Repository.connect(dsn, load_settings().service.key_secret, max_size=1)
        try:
            return (await repo.create_key(name, requests_per_minute, max_voice_sessions))[1]
        finally:
            await repo.close()

    return aio.run(make)


def count_messages(db, sid: str, role: str | None = None) -> int:
    if role is None:
        return db("SELECT count(*) AS n FROM messages WHERE session_id = $1", uuid.UUID(sid))[0]["n"]
    return db("SELECT count(*) AS n FROM messages WHERE session_id = $1 AND role = $2", uuid.UUID(sid), role)[0]["n"]
