"""PostgreSQL repository (asyncpg). One bounded pool per process that owns a `Repository`
(an ingress replica, a session host): connections grow with replicas, never with sessions.

Conversation writes carry the owner's fencing `epoch` (see `acquire`): a host that lost a
conversation to another cannot change its rows any more."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from samvad.contracts import GuardrailFlag, ProviderCall
from samvad.errors import NotFoundError, SamvadError
from samvad.storage.migrate import migrate
from samvad.storage.phones import ApiKeyRow as ApiKeyRow  # re-exported: where the API layer finds it
from samvad.storage.phones import PhoneRepository


class SessionRow(BaseModel):
    id: str
    language: str
    mode: str
    voice: str | None
    output_script: str | None = None
    knowledge_base: str | None = None  # None: the default one
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None


class MessageRow(BaseModel):
    id: int
    turn_id: str
    role: str
    content: str
    language: str
    language_confidence: float | None = None  # detected (language "auto"): how sure
    status: str
    guardrail_flags: list[GuardrailFlag]
    created_at: datetime


class TooManySessions(SamvadError):
    code = "too_many_sessions"
    status = 429


class FencedError(SamvadError):
    """The conversation is owned by another session host now (a newer epoch): this host must
    drop it. The request can be sent again; it is routed to the owner."""

    code = "session_moved"
    status = 503
    retryable = True


def _earlier(row: asyncpg.Record, route: str, request_hash: str) -> Claim:
    """The claim of an earlier request with the same key, which must be the same request."""
    if row["route"] != route or row["request_hash"] != request_hash:
        raise IdempotencyMismatch(
            "this Idempotency-Key was used for a different request; use a new key for a new request"
        )
    return Claim(
        session_id=str(row["session_id"]) if row["session_id"] else None,
        turn_id=row["turn_id"],
        response=row["response"],
        fresh=False,
    )


class IdempotencyMismatch(SamvadError):
    code = "idempotency_key_reused"
    status = 422


class Claim(BaseModel):
    """An Idempotency-Key's record: the session and turn it stands for, and the answer once made."""

    session_id: str | None
    turn_id: str | None
    response: str | None
    fresh: bool  # claimed by this request (False: a retry of an earlier one)


def hash_key(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


class Repository(PhoneRepository):
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
        return bool(await self._pool.fetchval("SELECT 1") == 1)

    # sessions -------------------------------------------------------------------------------
    async def create_session(
        self,
        language: str,
        mode: str,
        voice: str | None,
        api_key_id: int | None = None,
        output_script: str | None = None,
        *,
        knowledge_base: str | None = None,
        conn: asyncpg.Connection | None = None,
        max_open: int | None = None,
        open_s: float = 3600.0,
    ) -> SessionRow:
        """A new session. With `max_open`, refused (`TooManySessions`) while the key already has
        that many open: not closed and with a turn in the last `open_s` seconds. The count and the
        insert run under a per-key lock, so concurrent creations cannot overshoot."""
        if max_open is None or api_key_id is None:
            return await self._insert_session(
                conn or self._pool, language, mode, voice, api_key_id, output_script, knowledge_base
            )
        try:  # the per-key lock, the count and the insert in one call (migration 0008)
            row = await (conn or self._pool).fetchrow(
                "SELECT * FROM samvad_open_session($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                uuid.uuid4(),
                language,
                mode,
                voice,
                api_key_id,
                output_script,
                max_open,
                open_s,
                knowledge_base,
            )
        except asyncpg.RaiseError as exc:
            if exc.args and exc.args[0] == "samvad_too_many_sessions":
                raise TooManySessions(
                    f"this API key has {exc.detail} open sessions (the limit is {max_open}): "
                    "close one (DELETE /api/v1/sessions/{id}) or reuse it"
                ) from None
            raise
        return _session(row)

    async def _insert_session(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        language: str,
        mode: str,
        voice: str | None,
        api_key_id: int | None,
        output_script: str | None,
        knowledge_base: str | None,
    ) -> SessionRow:
        row = await conn.fetchrow(
            "INSERT INTO sessions (id, language, mode, voice, api_key_id, output_script, knowledge_base)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            uuid.uuid4(),
            language,
            mode,
            voice,
            api_key_id,
            output_script,
            knowledge_base,
        )
        return _session(row)

    async def close_session(self, session_id: str, api_key_id: int) -> bool:
        """Mark the key's session closed (it stops counting as open); False if there is none."""
        try:
            sid = uuid.UUID(session_id)
        except ValueError:
            return False
        status = await self._pool.execute(
            "UPDATE sessions SET closed_at = coalesce(closed_at, now()) WHERE id = $1 AND api_key_id = $2",
            sid,
            api_key_id,
        )
        return bool(status.endswith(" 1"))

    async def get_session(self, session_id: str, api_key_id: int | None = None) -> SessionRow:
        """The session; with `api_key_id`, only if that key owns it. Another key's session is
        answered exactly like one that does not exist."""
        try:
            sid = uuid.UUID(session_id)
        except ValueError:
            raise NotFoundError(f"no session {session_id!r}", code="session_not_found") from None
        row = await self._pool.fetchrow("SELECT * FROM sessions WHERE id = $1", sid)
        if row is None or (api_key_id is not None and row["api_key_id"] != api_key_id):
            raise NotFoundError(f"no session {session_id!r}", code="session_not_found")
        return _session(row)

    # ownership (session hosts) ----------------------------------------------------------------
    async def heartbeat(self, host_id: str, ttl_s: float) -> list[str]:
        """Renew the host's lease; returns the conversations it owns that another host asked for."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO session_hosts (id, lease_until) VALUES ($1, now() + make_interval(secs => $2))"
                " ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until",
                host_id,
                ttl_s,
            )
            rows = await conn.fetch("SELECT id FROM sessions WHERE owner = $1 AND handoff", host_id)
        return [str(r["id"]) for r in rows]

    async def acquire(self, session_id: str, host_id: str) -> int | None:
        """Take ownership of a conversation: granted when nobody holds it, this host does, or its
        holder's lease lapsed. Returns the new epoch (every later write carries it), or None while
        another live host owns it (which is then asked to hand it off)."""
        sid = uuid.UUID(session_id)
        async with self._pool.acquire() as conn:
            epoch = await conn.fetchval(
                """UPDATE sessions s SET owner = $2, epoch = s.epoch + 1, handoff = false
                   WHERE s.id = $1 AND (s.owner IS NULL OR s.owner = $2 OR NOT EXISTS (
                       SELECT 1 FROM session_hosts h WHERE h.id = s.owner AND h.lease_until > now()))
                   RETURNING s.epoch""",
                sid,
                host_id,
            )
            if epoch is not None:
                return int(epoch)
            status = await conn.execute("UPDATE sessions SET handoff = true WHERE id = $1", sid)
        if status.endswith(" 0"):
            raise NotFoundError(f"no session {session_id!r}", code="session_not_found")
        return None

    async def release(self, session_ids: list[str], host_id: str) -> None:
        """Give up conversations (passivated, handed off): another host may take them at once."""
        if session_ids:
            await self._pool.execute(
                "UPDATE sessions SET owner = NULL, handoff = false WHERE id = ANY($1::uuid[]) AND owner = $2",
                [uuid.UUID(s) for s in session_ids],
                host_id,
            )

    async def drop_host(self, host_id: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE sessions SET owner = NULL, handoff = false WHERE owner = $1", host_id)
            await conn.execute("DELETE FROM session_hosts WHERE id = $1", host_id)

    async def update_session(self, session_id: str, *, language: str, mode: str, voice: str | None) -> None:
        await self._pool.execute(
            "UPDATE sessions SET language = $2, mode = $3, voice = $4, updated_at = now() WHERE id = $1",
            uuid.UUID(session_id),
            language,
            mode,
            voice,
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
        epoch: int | None = None,
        language_confidence: float | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> None:
        """Idempotent per (session, turn, role): a retried write updates instead of duplicating.
        One statement: the session row is locked and its epoch checked, then the message written,
        so a write from a host that lost the conversation changes nothing (`FencedError`)."""
        written = await (conn or self._pool).fetchval(
            """WITH s AS (UPDATE sessions SET updated_at = now() WHERE id = $1 AND ($8::bigint IS NULL OR epoch = $8)
                          RETURNING id)
               INSERT INTO messages (session_id, turn_id, role, content, language, status, guardrail_flags,
                                     language_confidence)
               SELECT s.id, $2, $3, $4, $5, $6, $7::jsonb, $9 FROM s
               ON CONFLICT (session_id, turn_id, role)
               DO UPDATE SET content = EXCLUDED.content, status = EXCLUDED.status,
                             guardrail_flags = EXCLUDED.guardrail_flags, language = EXCLUDED.language,
                             language_confidence = EXCLUDED.language_confidence
               RETURNING 1""",
            uuid.UUID(session_id),
            turn_id,
            role,
            content,
            language,
            status,
            json.dumps([f.model_dump() for f in flags or []]),
            epoch,
            language_confidence,
        )
        if written is None:
            raise FencedError(f"session {session_id} is owned by another host now")

    async def record_turn(
        self,
        session_id: str,
        turn_id: str,
        calls: list[ProviderCall],
        content: str,
        language: str,
        status: str,
        flags: list[GuardrailFlag] | None = None,
        *,
        epoch: int | None = None,
        response: str | None = None,
    ) -> None:
        """The end of a turn in one statement (one round trip, atomic): the assistant message
        (fenced: the session row is locked and its epoch checked), its provider calls and, for
        an Idempotency-Key, the answer. Retry-safe: the turn's calls are replaced, the message
        upserted (the statement's DELETE sees only rows from before it)."""
        written = await self._pool.fetchval(
            """WITH s AS (UPDATE sessions SET updated_at = now() WHERE id = $1 AND ($8::bigint IS NULL OR epoch = $8)
                          RETURNING id),
               m AS (INSERT INTO messages (session_id, turn_id, role, content, language, status, guardrail_flags)
                     SELECT s.id, $2, 'assistant', $3, $4, $5, $6::jsonb FROM s
                     ON CONFLICT (session_id, turn_id, role)
                     DO UPDATE SET content = EXCLUDED.content, status = EXCLUDED.status,
                                   guardrail_flags = EXCLUDED.guardrail_flags
                     RETURNING 1),
               d AS (DELETE FROM provider_calls WHERE session_id IN (SELECT id FROM s) AND turn_id = $2),
               c AS (INSERT INTO provider_calls (session_id, turn_id, stage, provider, model, audio_seconds, characters,
                         input_tokens, output_tokens, cached_tokens, cost, currency, ttfb_ms, latency_ms, outcome, error, retries,
                         reasoning_tokens, usage_estimated)
                     SELECT s.id, $2, x.stage, x.provider, x.model, x.audio_seconds, x.characters, x.input_tokens,
                            x.output_tokens, x.cached_tokens, x.cost, x.currency, x.ttfb_ms, x.latency_ms, x.outcome,
                            x.error, x.retries, x.reasoning_tokens, x.usage_estimated
                     FROM s, jsonb_to_recordset($7::jsonb) AS x(stage text, provider text, model text,
                         audio_seconds double precision, characters integer, input_tokens integer, output_tokens integer,
                         cached_tokens integer, cost numeric, currency text, ttfb_ms double precision,
                         latency_ms double precision, outcome text, error text, retries integer, reasoning_tokens integer,
                         usage_estimated boolean)),
               i AS (UPDATE idempotency_keys SET response = $9 WHERE $9::text IS NOT NULL
                         AND session_id IN (SELECT id FROM s) AND turn_id = $2)
               SELECT count(*) FROM m""",
            uuid.UUID(session_id),
            turn_id,
            content,
            language,
            status,
            json.dumps([f.model_dump() for f in flags or []]),
            json.dumps([_call_row(c) for c in calls]),
            epoch,
            response,
        )
        if not written:
            raise FencedError(f"session {session_id} is owned by another host now")

    async def settle(self, session_id: str, turn_id: str, content: str, status: str, epoch: int | None = None) -> bool:
        """What the caller heard of a spoken answer (the voice session knows): its text and status.
        False when the turn has no assistant message (yet)."""
        done = await self._pool.fetchval(
            """WITH s AS (SELECT id FROM sessions WHERE id = $1 AND ($5::bigint IS NULL OR epoch = $5) FOR UPDATE)
               UPDATE messages m SET content = $3, status = $4 FROM s
               WHERE m.session_id = s.id AND m.turn_id = $2 AND m.role = 'assistant' RETURNING 1""",
            uuid.UUID(session_id),
            turn_id,
            content,
            status,
            epoch,
        )
        if (
            done is None
            and epoch is not None
            and not await self._pool.fetchval(
                "SELECT 1 FROM sessions WHERE id = $1 AND epoch = $2", uuid.UUID(session_id), epoch
            )
        ):
            raise FencedError(f"session {session_id} is owned by another host now")
        return done is not None

    # idempotency keys -------------------------------------------------------------------------
    async def claim(
        self,
        api_key_id: int,
        key: str,
        route: str,
        request_hash: str,
        *,
        session_id: str | None = None,
        new_session: dict[str, Any] | None = None,
        new_turn: bool = False,
    ) -> Claim:
        """Record an Idempotency-Key, or find the earlier request that used it. A new claim
        creates its session (`new_session`: create_session's arguments) in the same transaction,
        so a retried request finds the very same session and turn."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM idempotency_keys WHERE api_key_id = $1 AND key = $2 FOR UPDATE", api_key_id, key
            )
            if row is not None:
                return _earlier(row, route, request_hash)
            if new_session is not None:
                session_id = (await self.create_session(**new_session, api_key_id=api_key_id, conn=conn)).id
            turn_id = uuid.uuid4().hex if new_turn else None
            inserted = await conn.fetchval(
                "INSERT INTO idempotency_keys (api_key_id, key, route, request_hash, session_id, turn_id)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1",
                api_key_id,
                key,
                route,
                request_hash,
                uuid.UUID(session_id) if session_id else None,
                turn_id,
            )
        if inserted is None:  # a concurrent request with the same key won the race: take its claim
            return await self.claim(api_key_id, key, route, request_hash, session_id=session_id)
        return Claim(session_id=session_id, turn_id=turn_id, response=None, fresh=True)

    async def find_claim(self, api_key_id: int, key: str, route: str, request_hash: str) -> Claim | None:
        """The earlier request that used this Idempotency-Key, if any (a retry is recognised
        before anything is charged for it)."""
        row = await self._pool.fetchrow(
            "SELECT * FROM idempotency_keys WHERE api_key_id = $1 AND key = $2", api_key_id, key
        )
        return None if row is None else _earlier(row, route, request_hash)

    async def idempotent_response(self, session_id: str, turn_id: str) -> str | None:
        response: str | None = await self._pool.fetchval(
            "SELECT response FROM idempotency_keys WHERE session_id = $1 AND turn_id = $2 AND response IS NOT NULL",
            uuid.UUID(session_id),
            turn_id,
        )
        return response

    async def expire_idempotency_keys(self, older_than_s: float) -> int:
        status = await self._pool.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)", older_than_s
        )
        return int(status.split()[-1])

    async def expire_sessions(self, older_than_s: float, batch: int = 1000) -> int:
        """Conversations with no activity for `older_than_s` go, with their messages, provider
        calls and phone-call records (ON DELETE CASCADE), `batch` at a time (short locks)."""
        # One replica at a time (the others' rounds find the lock taken and delete nothing);
        # sessions_updated_idx finds the old rows without a scan.
        status = await self._pool.execute(
            "DELETE FROM sessions WHERE pg_try_advisory_xact_lock(hashtext('samvad.retention'))"
            " AND id IN (SELECT id FROM sessions WHERE updated_at < now() - make_interval(secs => $1)"
            " ORDER BY updated_at LIMIT $2)",
            older_than_s,
            batch,
        )
        return int(status.split()[-1])

    async def messages(self, session_id: str, limit: int = 1000) -> list[MessageRow]:
        rows = await self._pool.fetch(
            "SELECT * FROM (SELECT * FROM messages WHERE session_id = $1 ORDER BY id DESC LIMIT $2) m ORDER BY id",
            uuid.UUID(session_id),
            limit,
        )
        return [MessageRow(**{**dict(r), "guardrail_flags": json.loads(r["guardrail_flags"])}) for r in rows]

    async def provider_calls(self, session_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT * FROM provider_calls WHERE session_id = $1 ORDER BY id", uuid.UUID(session_id)
        )
        return [dict(r) for r in rows]

    # API keys -------------------------------------------------------------------------------
    async def create_key(
        self,
        name: str,
        requests_per_minute: int | None = None,
        max_voice_sessions: int | None = None,
        max_open_sessions: int | None = None,
        sessions_per_minute: int | None = None,
        knowledge_bases: list[str] | None = None,
    ) -> tuple[ApiKeyRow, str]:
        """Returns the row and the plaintext key; only its HMAC is stored. Limits left None
        follow the service's `limits.*`; `knowledge_bases` None: it may use only the default one
        (deny by default), `["*"]`: every one served."""
        key = "sk_samvad_" + secrets.token_urlsafe(24)
        row = await self._pool.fetchrow(
            "INSERT INTO api_keys (name, prefix, key_hash, requests_per_minute, max_voice_sessions, max_open_sessions,"
            " sessions_per_minute, knowledge_bases) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
            name,
            key[:14],
            hash_key(key, self._secret),
            requests_per_minute,
            max_voice_sessions,
            max_open_sessions,
            sessions_per_minute,
            knowledge_bases,
        )
        return ApiKeyRow(**dict(row)), key

    async def verify_key(self, key: str) -> ApiKeyRow | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key, self._secret)
        )
        return ApiKeyRow(**dict(row)) if row else None

    async def get_key(self, key_id: int) -> ApiKeyRow | None:
        """The key's row as it is now; None once revoked."""
        row = await self._pool.fetchrow("SELECT * FROM api_keys WHERE id = $1 AND revoked_at IS NULL", key_id)
        return ApiKeyRow(**dict(row)) if row else None

    async def revoke_key(self, key_id: int) -> bool:
        status = await self._pool.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
        )
        return bool(status.endswith(" 1"))

    async def list_keys(self) -> list[ApiKeyRow]:
        return [ApiKeyRow(**dict(r)) for r in await self._pool.fetch("SELECT * FROM api_keys ORDER BY id")]


def _call_row(c: ProviderCall) -> dict[str, Any]:
    u = c.usage
    return {
        "stage": c.stage,
        "provider": c.provider,
        "model": c.model,
        "audio_seconds": u.audio_seconds,
        "characters": u.characters,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cached_tokens": u.cached_tokens,
        "cost": c.cost,
        "currency": c.currency,
        "ttfb_ms": c.ttfb_ms,
        "latency_ms": c.latency_ms,
        "outcome": c.outcome,
        "error": c.error_detail or c.error,  # the operator's table keeps the provider's own text
        "retries": c.retries,
        "reasoning_tokens": u.reasoning_tokens,
        "usage_estimated": u.estimated,
    }


def _session(row: asyncpg.Record) -> SessionRow:
    d = dict(row)
    d["id"] = str(d["id"])
    for private in ("api_key_id", "owner", "epoch", "handoff"):
        d.pop(private, None)
    return SessionRow(**d)
