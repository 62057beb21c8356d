"""Phone numbers routed to API keys, and phone calls (samvad/telephony/): the part of the
repository the telephony routes and `samvad phone` use. Every read is scoped to a key."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import asyncpg
from pydantic import BaseModel

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class ApiKeyRow(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    requests_per_minute: int | None = None
    max_voice_sessions: int | None = None
    max_open_sessions: int | None = None
    sessions_per_minute: int | None = None
    knowledge_bases: list[str] | None = None  # the ones it may use (the first by default); None: any


class PhoneRoute(BaseModel):
    id: int
    api_key_id: int
    number: str
    language: str
    mode: str | None = None
    voice: str | None = None
    greeting: str | None = None  # spoken when a call connects, before the caller speaks
    knowledge_base: str | None = None  # what its calls answer from (None: the default one)
    created_at: datetime


def redact_number(number: str | None) -> str | None:
    """What is kept of a caller's number: its country code and last four digits (PII)."""
    if not number:
        return None
    digits = re.sub(r"\D", "", number)
    if len(digits) <= 4:
        return "*" * len(digits)
    country = "+" + digits[:2] if number.strip().startswith("+") else ""
    hidden = len(digits) - 4 - (2 if country else 0)
    return f"{country}{'*' * max(hidden, 0)}{digits[-4:]}"


def normalise_number(number: str) -> str:
    """E.164 from what carriers send (+919812345678, 919812345678, 09812345678 for India)."""
    digits = re.sub(r"[^\d+]", "", number.strip())
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif digits.startswith("0") and len(digits) == 11:  # an Indian national number
        digits = "+91" + digits[1:]
    elif not digits.startswith("+"):
        digits = "+" + digits
    if not E164.match(digits):
        raise ValueError(f"not a phone number: {number!r} (use E.164, e.g. +918012345678)")
    return digits


def _e164(number: str | None) -> str | None:
    """A carrier's number as E.164 where it can be read as one, else as sent (shortened)."""
    if not number:
        return None
    try:
        return normalise_number(number)
    except ValueError:
        return number[:32]


class PhoneRepository:
    _pool: asyncpg.Pool

    async def add_phone_route(
        self,
        api_key_id: int,
        number: str,
        language: str,
        mode: str | None = None,
        voice: str | None = None,
        greeting: str | None = None,
        knowledge_base: str | None = None,
    ) -> PhoneRoute:
        """Route `number` to a key (replacing its previous route, if it was this key's)."""
        number = normalise_number(number)
        row = await self._pool.fetchrow(
            """INSERT INTO phone_routes (api_key_id, number, language, mode, voice, greeting, knowledge_base)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (number) DO UPDATE SET language = $3, mode = $4, voice = $5, greeting = $6,
                                                  knowledge_base = $7
                   WHERE phone_routes.api_key_id = $1
               RETURNING *""",
            api_key_id,
            number,
            language,
            mode,
            voice,
            greeting,
            knowledge_base,
        )
        if row is None:
            raise ValueError(f"{number} is routed to another API key")
        return PhoneRoute(**dict(row))

    async def phone_route(self, number: str) -> PhoneRoute | None:
        """The route of a called number, if its key is not revoked."""
        try:
            number = normalise_number(number)
        except ValueError:
            return None
        row = await self._pool.fetchrow(
            """SELECT r.* FROM phone_routes r JOIN api_keys k ON k.id = r.api_key_id
               WHERE r.number = $1 AND k.revoked_at IS NULL""",
            number,
        )
        return PhoneRoute(**dict(row)) if row else None

    async def phone_route_by_id(self, route_id: int) -> PhoneRoute | None:
        row = await self._pool.fetchrow(
            """SELECT r.* FROM phone_routes r JOIN api_keys k ON k.id = r.api_key_id
               WHERE r.id = $1 AND k.revoked_at IS NULL""",
            route_id,
        )
        return PhoneRoute(**dict(row)) if row else None

    async def phone_routes(self, api_key_id: int | None = None) -> list[PhoneRoute]:
        rows = await self._pool.fetch(
            "SELECT * FROM phone_routes WHERE $1::bigint IS NULL OR api_key_id = $1 ORDER BY id", api_key_id
        )
        return [PhoneRoute(**dict(r)) for r in rows]

    async def remove_phone_route(self, number: str) -> bool:
        status = await self._pool.execute("DELETE FROM phone_routes WHERE number = $1", normalise_number(number))
        return bool(status.endswith(" 1"))

    async def active_key(self, api_key_id: int) -> ApiKeyRow | None:
        row = await self._pool.fetchrow("SELECT * FROM api_keys WHERE id = $1 AND revoked_at IS NULL", api_key_id)
        return ApiKeyRow(**dict(row)) if row else None

    async def phone_call_seen(self, carrier: str, call_id: str) -> bool:
        """Whether a stream for this carrier call already started (kept as long as its session)."""
        row = await self._pool.fetchval(
            "SELECT 1 FROM phone_calls WHERE carrier = $1 AND call_id = $2 LIMIT 1", carrier, call_id
        )
        return row is not None

    async def start_phone_call(
        self,
        session_id: str,
        api_key_id: int,
        carrier: str,
        call_id: str,
        stream_id: str,
        caller: str | None,
        called: str | None,
    ) -> None:
        await self._pool.execute(
            """INSERT INTO phone_calls (session_id, api_key_id, carrier, call_id, stream_id, caller, called)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            uuid.UUID(session_id),
            api_key_id,
            carrier,
            call_id[:128],
            stream_id[:128],
            redact_number(_e164(caller)),
            _e164(called),
        )

    async def end_phone_call(self, session_id: str, reason: str) -> None:
        await self._pool.execute(
            "UPDATE phone_calls SET ended_at = now(), end_reason = $2 WHERE session_id = $1 AND ended_at IS NULL",
            uuid.UUID(session_id),
            reason[:64],
        )
