"""The Store stage service (wrapped by the Store deployment): the one place session actors
write through, so PostgreSQL connections are bounded by Store replicas x pool size, not by the
number of live sessions.

It also rides out a database outage (a restart, a failover): reads are retried for a while and
then answered with a clear 503; writes that cannot reach the database are queued in order and
flushed by a background task when it is back, so a conversation goes on and an accepted
message is still persisted. Every write is idempotent (upserts keyed by session, turn and role;
a turn's calls replaced), so a write retried after an ambiguous failure does not duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from samvad import metrics
from samvad.errors import DatabaseUnavailable
from samvad.settings import Settings, as_settings
from samvad.storage.repository import Repository

log = logging.getLogger("samvad.store")

# Writes whose result nobody needs: they may be queued while the database is away.
QUEUEABLE = frozenset({"add_message", "record_turn", "update_session", "add_provider_calls"})


def is_transient(exc: BaseException) -> bool:
    """The database is (for now) unreachable, as opposed to a query that is wrong."""
    return isinstance(exc, (
        OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
        asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.TooManyConnectionsError,
        asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError,
    ))


class StoreStage:
    def __init__(self, settings: Settings | dict[str, Any]) -> None:
        self.settings = as_settings(settings)
        if not self.settings.database_url:
            raise ValueError("the Store needs database_url (samvad run starts an embedded server and sets it)")
        self._repo: Repository | None = None
        self._lock = asyncio.Lock()
        self._queue: deque[tuple[str, tuple, dict]] = deque()
        self._flusher: asyncio.Task | None = None

    async def repo(self) -> Repository:
        if self._repo is None:
            async with self._lock:
                if self._repo is None:
                    self._repo = await Repository.connect(
                        self.settings.database_url, self.settings.service.key_secret,
                        max_size=self.settings.service.db_pool_size,
                    )
        return self._repo

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one repository method by name (one handle method instead of mirroring each)."""
        if method.startswith("_") or not hasattr(Repository, method):
            raise AttributeError(f"no repository method {method!r}")
        if method in QUEUEABLE:
            return await self._write(method, args, kwargs)
        try:
            async for attempt in self._retrying(self.settings.service.db_read_retry_s):
                with attempt:
                    return await self._run(method, args, kwargs)
        except Exception as exc:
            if is_transient(exc):
                raise DatabaseUnavailable("the database is not reachable right now; retry shortly") from None
            raise

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for queued writes to reach the database."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._queue and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return not self._queue

    async def _run(self, method: str, args: tuple, kwargs: dict) -> Any:
        repo = await self.repo()
        return await getattr(repo, method)(*args, **kwargs)

    def _retrying(self, seconds: float) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception(is_transient), stop=stop_after_delay(seconds),
            wait=wait_exponential_jitter(initial=0.05, max=1.0), reraise=True,
        )

    async def _write(self, method: str, args: tuple, kwargs: dict) -> None:
        if not self._queue:  # nothing waiting: write now (writes for a session stay in order)
            try:
                async for attempt in self._retrying(self.settings.service.db_write_retry_s):
                    with attempt:
                        await self._run(method, args, kwargs)
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("database unreachable (%s): queueing writes", type(exc).__name__)
        if len(self._queue) >= self.settings.service.db_write_queue:
            metrics.inc("samvad_store_write_failures_total", action="refused")
            raise DatabaseUnavailable("the database is unreachable and the write queue is full")
        self._queue.append((method, args, kwargs))
        metrics.inc("samvad_store_write_failures_total", action="queued")
        metrics.gauge("samvad_store_buffered_writes", len(self._queue))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        delay = 0.2
        while self._queue:
            method, args, kwargs = self._queue[0]
            try:
                await self._run(method, args, kwargs)
            except Exception as exc:  # noqa: BLE001 - keep the order: retry the head until it lands
                if not is_transient(exc):
                    # A write the database refuses for good would block every later one.
                    log.error("dropping a queued %s the database refuses: %s", method, exc)
                    metrics.inc("samvad_store_write_failures_total", action="dropped")
                    self._queue.popleft()
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._queue.popleft()
            delay = 0.2
            metrics.gauge("samvad_store_buffered_writes", len(self._queue))
        log.info("database writes flushed")

    async def close(self) -> None:
        """Give queued writes a last chance, then close the pool."""
        if self._queue:
            await self.flush(self.settings.service.db_write_retry_s)
        if self._repo is not None:
            await self._repo.close()
            self._repo = None
