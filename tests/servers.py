"""PostgreSQL and Redis for tests: the machine's servers when they answer on their standard
ports (CI has them), otherwise embedded ones started in a temp folder."""

from __future__ import annotations

import asyncio
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from samvad.storage import embedded


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def postgres(tmp: Path):
    """Yields the DSN of a fresh, empty database, dropped afterwards."""
    admin = "postgresql://postgres@127.0.0.1:5432/test" if _port_open(5432) else embedded.start_postgres(tmp)
    name = f"samvad_test_{uuid.uuid4().hex[:8]}"

    async def sql(q: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(q)
        finally:
            await conn.close()

    asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    dsn = (
        admin.replace("/test", f"/{name}", 1)
        if admin.endswith("/test")
        else admin.replace("/postgres?", f"/{name}?", 1)
    )
    try:
        yield dsn
    finally:
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not admin.endswith("/test"):
            embedded.stop_postgres(tmp)


@contextmanager
def redis_url(tmp: Path):
    if _port_open(6379):
        yield "redis://127.0.0.1:6379/7"
    else:
        url = embedded.start_redis(tmp)
        try:
            yield url
        finally:
            embedded.stop_redis(tmp)
