"""Slots a voice call holds while it lasts: one of its address's open sockets
(`limits.max_sockets_per_ip`) and one of its key's live calls (`voice.max_sessions_per_key`, or the
key's own), leases in Redis shared by every replica, renewed while held (a replica that dies
stops holding its slots)."""

from __future__ import annotations

import asyncio

from samvad import metrics
from samvad.settings import LimitSettings
from samvad.storage.phones import ApiKeyRow
from samvad.storage.ratelimit import SessionSlots


class CallSlots:
    def __init__(self, redis_url: str | None, limits: LimitSettings, max_calls_per_key: int) -> None:
        self.limits, self.max_calls_per_key = limits, max_calls_per_key
        self.slots = SessionSlots(redis_url, fail_open=limits.fail_open) if redis_url else None
        self._live: dict[int, int] = {}  # API key id -> open voice calls on this replica

    async def open_socket(self, ip: str, slot: str) -> bool:
        """A slot among the IP's open voice sockets (`limits.max_sockets_per_ip`, across replicas)."""
        if self.slots is None:
            return True
        decision = await self.slots.admit(
            f"ip:{ip}", slot, self.limits.max_sockets_per_ip, fail_open=self.limits.ip_fail_open
        )
        return decision.allowed

    async def keep_socket(self, ip: str, slot: str) -> None:
        await self._keep(f"ip:{ip}", slot, self.limits.max_sockets_per_ip)

    async def close_socket(self, ip: str, slot: str) -> None:
        if self.slots is not None:
            await self.slots.release(f"ip:{ip}", slot)

    async def open_call(self, key: ApiKeyRow, slot: str) -> bool:
        """A slot among the key's concurrent voice calls, counted across replicas in Redis."""
        limit = key.max_voice_sessions or self.max_calls_per_key
        if self.slots is None:
            allowed = self._live.get(key.id, 0) < limit
        else:
            decision = await self.slots.admit(key.id, slot, limit)
            if decision.degraded:
                metrics.inc("samvad_rate_limit_degraded_total", policy="open" if decision.allowed else "closed")
            allowed = decision.allowed
        if allowed:
            self._live[key.id] = self._live.get(key.id, 0) + 1
            metrics.gauge("samvad_live_voice_sessions", sum(self._live.values()))
        return allowed

    async def keep_call(self, key: ApiKeyRow, slot: str) -> None:
        await self._keep(key.id, slot, key.max_voice_sessions or self.max_calls_per_key)

    async def _keep(self, owner: int | str, slot: str, limit: int) -> None:
        """Renew a held slot's lease while it lasts (a replica that dies stops holding its slots);
        a slot already held is not lost to a Redis blip."""
        while self.slots is not None:
            await asyncio.sleep(self.slots.lease_s / 3)
            await self.slots.admit(owner, slot, limit, fail_open=True)

    async def close_call(self, key: ApiKeyRow, slot: str) -> None:
        self._live[key.id] -= 1
        metrics.gauge("samvad_live_voice_sessions", sum(self._live.values()))
        if self.slots is not None:
            await self.slots.release(key.id, slot)
