"""A small migration runner: numbered SQL files applied in order, each in its own transaction,
recorded in `schema_migrations`, under an advisory lock so concurrent start-ups apply once.

A library like yoyo or alembic needs a synchronous driver next to asyncpg; plain SQL files
and thirty lines keep one driver.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

_LOCK_KEY = 0x5A4D5644  # "SAMVAD": arbitrary, fixed
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def available() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped in the package, in order."""
    files = resources.files("samvad.storage") / "migrations"
    out = []
    for f in files.iterdir():
        m = _NAME.match(f.name)
        if m:
            out.append((int(m.group(1)), f.name, f.read_text(encoding="utf-8")))
    return sorted(out)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; returns the names applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in available():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied.append(name)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
