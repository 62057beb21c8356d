"""Routes every call for a conversation to the Sessions replica that hosts it.

Rendezvous (highest-random-weight) hashing of the session id — the first argument of every
Sessions method — over the live replicas: every ingress replica picks the same host
with no shared state, and when a replica joins or leaves only the conversations that hashed to
it move. Chosen over Serve's model multiplexing, which would broadcast every replica's list of
loaded ids to every handle at each activation: at 10,000 conversations per replica that list
is ~400 KB per change. (The id is not sent as `multiplexed_model_id` either: Serve 2.60's router
indexes pending requests by that id and only a multiplexing router ever prunes the index, so
every request, arguments and all, would stay in the caller's memory.) Routing only proposes; single ownership is the lease in PostgreSQL
(`actors.host`), which holds while replicas come and go.
"""

from __future__ import annotations

import hashlib
import random

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica


def owner(key: str, replica_ids: list[str]) -> str:
    """The replica id that `key` belongs to among `replica_ids` (rendezvous hashing)."""
    return max(replica_ids, key=lambda rid: hashlib.blake2b(f"{key}|{rid}".encode(), digest_size=8).digest())


class SessionRouter(RequestRouter):
    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        key = pending_request.args[0] if pending_request is not None and pending_request.args else None
        if not isinstance(key, str) or not key:  # not a conversation's call: any replica
            return [[random.choice(candidate_replicas)]]
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        # Only the owner: if it is busy the request waits for it rather than going elsewhere.
        return [[by_id[owner(key, list(by_id))]]]
