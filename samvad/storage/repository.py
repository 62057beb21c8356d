"""PostgreSQL repository (asyncpg). One bounded pool per process that owns a `Repository`;
session actors never open their own: they write through the Store deployment."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from samvad.contracts import GuardrailFlag, ProviderCall
from samvad.errors import NotFoundError
from samvad.storage.migrate import migrate


class SessionRow(BaseModel):
    id: str
    language: str
    mode: str
    voice: str | None
    output_script: str | None = None
    created_at: datetime
    updated_at: datetime


class MessageRow(BaseModel):
    id: int
    turn_id: str
    role: str
    content: str
    language: str
    status: str
    guardrail_flags: list[GuardrailFlag]
    created_at: datetime


class ApiKeyRow(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    requests_per_minute: int | None = None
    max_voice_sessions: int | None = None


def hash_key(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


class Repository:
    def __init__(self, pool: asyncpg.Pool, key_secret: str) -> None:
        self._pool = pool
        self._secret = key_secret

    @classmethod
    async def connect(cls, dsn: str, key_secret: str, *, max_size: int = 5, run_migrations: bool = True) -> Repository:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, command_timeout=30)
        if run_migrations:
            async with pool.acquire() as conn:
                await migrate(conn)
        return cls(pool, key_secret)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> bool:
        return await self._pool.fetchval("SELECT 1") == 1

    # sessions -------------------------------------------------------------------------------
    async def create_session(
        self, language: str, mode: str, voice: str | None, api_key_id: int | None = None, output_script: str | None = None
    ) -> SessionRow:
        row = await self._pool.fetchrow(
            "INSERT INTO sessions (id, language, mode, voice, api_key_id, output_script)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            uuid.uuid4(), language, mode, voice, api_key_id, output_script,
        )
        return _session(row)

    async def get_session(self, session_id: str) -> SessionRow:
        try:
            sid = uuid.UUID(session_id)
        except ValueError:
            raise NotFoundError(f"no session {session_id!r}", code="session_not_found") from None
        row = await self._pool.fetchrow("SELECT * FROM sessions WHERE id = $1", sid)
        if row is None:
            raise NotFoundError(f"no session {session_id!r}", code="session_not_found")
        return _session(row)

    async def update_session(self, session_id: str, *, language: str, mode: str, voice: str | None) -> None:
        await self._pool.execute(
            "UPDATE sessions SET language = $2, mode = $3, voice = $4, updated_at = now() WHERE id = $1",
            uuid.UUID(session_id), language, mode, voice,
        )

    # messages -------------------------------------------------------------------------------
    async def add_message(
        self,
        session_id: str,
        turn_id: str,
        role: str,
        content: str,
        language: str,
        status: str,
        flags: list[GuardrailFlag] | None = None,
        *,
        conn: asyncpg.Connection | None = None,
    ) -> None:
        """Idempotent per (session, turn, role): a retried write updates instead of duplicating."""
        db = conn or self._pool
        await db.execute(
            """INSERT INTO messages (session_id, turn_id, role, content, language, status, guardrail_flags)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
               ON CONFLICT (session_id, turn_id, role)
               DO UPDATE SET content = EXCLUDED.content, status = EXCLUDED.status,
                             guardrail_flags = EXCLUDED.guardrail_flags""",
            uuid.UUID(session_id), turn_id, role, content, language, status,
            json.dumps([f.model_dump() for f in flags or []]),
        )
        await db.execute("UPDATE sessions SET updated_at = now() WHERE id = $1", uuid.UUID(session_id))

    async def record_turn(
        self,
        session_id: str,
        turn_id: str,
        calls: list[ProviderCall],
        content: str,
        language: str,
        status: str,
        flags: list[GuardrailFlag] | None = None,
    ) -> None:
        """The end of a turn in one round trip and one transaction: its provider calls and the
        assistant message. Retry-safe: the calls of a turn are replaced, the message upserted."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM provider_calls WHERE session_id = $1 AND turn_id = $2", uuid.UUID(session_id), turn_id)
            await self.add_provider_calls(session_id, turn_id, calls, conn=conn)
            await self.add_message(session_id, turn_id, "assistant", content, language, status, flags, conn=conn)

    async def messages(self, session_id: str, limit: int = 1000) -> list[MessageRow]:
        rows = await self._pool.fetch(
            "SELECT * FROM (SELECT * FROM messages WHERE session_id = $1 ORDER BY id DESC LIMIT $2) m ORDER BY id",
            uuid.UUID(session_id), limit,
        )
        return [
            MessageRow(**{**dict(r), "guardrail_flags": json.loads(r["guardrail_flags"])}) for r in rows
        ]

    async def add_provider_calls(
        self, session_id: str, turn_id: str, calls: list[ProviderCall], *, conn: asyncpg.Connection | None = None
    ) -> None:
        if not calls:
            return
        await (conn or self._pool).executemany(
            """INSERT INTO provider_calls (session_id, turn_id, stage, provider, model, audio_seconds, characters,
                   input_tokens, output_tokens, cached_tokens, cost, currency, ttfb_ms, latency_ms, outcome, error, retries)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)""",
            [
                (
                    uuid.UUID(session_id), turn_id, c.stage, c.provider, c.model, c.usage.audio_seconds,
                    c.usage.characters, c.usage.input_tokens, c.usage.output_tokens, c.usage.cached_tokens,
                    c.cost, c.currency, c.ttfb_ms, c.latency_ms, c.outcome, c.error, c.retries,
                )
                for c in calls
            ],
        )

    async def provider_calls(self, session_id: str) -> list[dict]:
        rows = await self._pool.fetch("SELECT * FROM provider_calls WHERE session_id = $1 ORDER BY id", uuid.UUID(session_id))
        return [dict(r) for r in rows]

    # API keys -------------------------------------------------------------------------------
    async def create_key(
        self, name: str, requests_per_minute: int | None = None, max_voice_sessions: int | None = None
    ) -> tuple[ApiKeyRow, str]:
        """Returns the row and the plaintext key; only its HMAC is stored."""
        key = "sk_samvad_" + secrets.token_urlsafe(24)
        row = await self._pool.fetchrow(
            "INSERT INTO api_keys (name, prefix, key_hash, requests_per_minute, max_voice_sessions)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING *",
            name, key[:14], hash_key(key, self._secret), requests_per_minute, max_voice_sessions,
        )
        return ApiKeyRow(**dict(row)), key

    async def verify_key(self, key: str) -> ApiKeyRow | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key, self._secret)
        )
        return ApiKeyRow(**dict(row)) if row else None

    async def revoke_key(self, key_id: int) -> bool:
        status = await self._pool.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id)
        return status.endswith(" 1")

    async def list_keys(self) -> list[ApiKeyRow]:
        return [ApiKeyRow(**dict(r)) for r in await self._pool.fetch("SELECT * FROM api_keys ORDER BY id")]


def _session(row: asyncpg.Record) -> SessionRow:
    d = dict(row)
    d["id"] = str(d["id"])
    d.pop("api_key_id", None)
    return SessionRow(**d)
