"""The repository behind one retry policy for a database outage (a restart, a failover).

Every process that talks to PostgreSQL (an ingress replica, a session host) holds one
`Database` with a small pool, so connections grow with replicas, never with sessions.

Writes are acknowledged only once committed: a write that cannot reach the database within
`db_write_retry_s` fails with `DatabaseUnavailable` (503), and the caller's request fails with
it, so nothing is acknowledged that a process death could lose. Reads retry for
`db_read_retry_s`, then answer 503 the same way. Every write is idempotent (upserts keyed by
session, turn and role), so a write retried after an ambiguous failure does not duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from samvad import metrics
from samvad.errors import DatabaseUnavailable
from samvad.settings import Settings, secret
from samvad.storage.repository import Repository

log = logging.getLogger("samvad.db")

WRITES = frozenset(
    {
        "add_message",
        "record_turn",
        "settle",
        "update_session",
        "create_session",
        "close_session",
        "start_phone_call",
        "end_phone_call",
        "claim",
        "acquire",
        "release",
        "heartbeat",
        "drop_host",
        "expire_idempotency_keys",
        "expire_sessions",
    }
)


def is_transient(exc: BaseException) -> bool:
    """The database is (for now) unreachable, as opposed to a query that is wrong."""
    return isinstance(
        exc,
        (
            OSError,
            asyncio.TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError,
            asyncpg.CrashShutdownError,
            asyncpg.TooManyConnectionsError,
            asyncpg.ConnectionDoesNotExistError,
            asyncpg.InterfaceError,
        ),
    )


class Database:
    def __init__(self, settings: Settings, pool_size: int | None = None) -> None:
        if not settings.database_url:
            raise ValueError("database_url is not set (samvad run starts an embedded server and sets it)")
        secret(settings.service, "key")  # refuse to start without a real secret, not at the first request
        self._s = settings
        self._pool_size = pool_size or settings.service.db_pool_size
        self._repo: Repository | None = None
        self._lock = asyncio.Lock()
        self.up = True  # what the last call found: /readyz answers from it at once

    async def repo(self) -> Repository:
        if self._repo is None:
            if not self._s.database_url:
                raise RuntimeError("settings.database_url is not set (the entry point starts or names the database)")
            async with self._lock:
                if self._repo is None:
                    self._repo = await Repository.connect(
                        self._s.database_url, secret(self._s.service, "key"), max_size=self._pool_size
                    )
        return self._repo

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one repository method, retried while the database is unreachable."""
        seconds = self._s.service.db_write_retry_s if method in WRITES else self._s.service.db_read_retry_s
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(is_transient),
                stop=stop_after_delay(seconds),
                wait=wait_exponential_jitter(initial=0.05, max=1.0),
                reraise=True,
            ):
                with attempt:
                    result = await getattr(await self.repo(), method)(*args, **kwargs)
        except Exception as exc:
            if is_transient(exc):
                self.up = False
                if method in WRITES:
                    metrics.inc("samvad_store_write_failures_total", action="refused")
                raise DatabaseUnavailable("the database is not reachable right now; retry shortly") from None
            raise
        self.up = True
        return result

    async def ping_once(self) -> bool:
        """One ping, no retries (readiness probes)."""
        return await (await self.repo()).ping()

    def __getattr__(
        self, method: str
    ) -> Any:  # the repository's methods, retried (typed by the Protocols that use them)
        if method.startswith("_") or not hasattr(Repository, method):
            raise AttributeError(method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.call(method, *args, **kwargs)

        return call

    async def close(self) -> None:
        if self._repo is not None:
            await self._repo.close()
            self._repo = None
