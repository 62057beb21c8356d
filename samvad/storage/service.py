"""The Store stage service (wrapped by the Store deployment): the one place session actors
write through, so PostgreSQL connections are bounded by Store replicas x pool size, not by the
number of live sessions."""

from __future__ import annotations

import asyncio
from typing import Any

from samvad.settings import Settings, as_settings
from samvad.storage.repository import Repository


class StoreStage:
    def __init__(self, settings: Settings | dict[str, Any]) -> None:
        self.settings = as_settings(settings)
        if not self.settings.database_url:
            raise ValueError("the Store needs database_url (samvad run starts an embedded server and sets it)")
        self._repo: Repository | None = None
        self._lock = asyncio.Lock()

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
        repo = await self.repo()
        return await getattr(repo, method)(*args, **kwargs)
