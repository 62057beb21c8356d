"""The session host without Ray: many conversations per process, one turn at a time each, LRU
and idle passivation, rehydration, fencing, idempotent answers. The store is an in-memory fake
of the repository's ownership and message contract."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
import uuid
from datetime import UTC, datetime

import pytest

from actors.host import SessionBusy, SessionHost
from samvad.settings import REPO_ROOT, SessionTierSettings, load_settings
from samvad.storage.repository import FencedError, MessageRow
from samvad.turn import TurnRequest

pytestmark = pytest.mark.unit


class FakeStore:
    """Sessions with an owner and an epoch, host leases, messages upserted by (turn, role)."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict] = {}
        self.leases: dict[str, float] = {}
        self.messages_by: dict[str, dict[tuple[str, str], MessageRow]] = {}
        self.answers: dict[tuple[str, str], str] = {}
        self.write_delay = 0.0

    def new_session(self) -> str:
        sid = str(uuid.uuid4())
        self.sessions[sid] = {"owner": None, "epoch": 0, "handoff": False}
        self.messages_by[sid] = {}
        return sid

    async def heartbeat(self, host_id, ttl_s):
        self.leases[host_id] = time.monotonic() + ttl_s
        return [sid for sid, s in self.sessions.items() if s["owner"] == host_id and s["handoff"]]

    async def acquire(self, session_id, host_id):
        s = self.sessions[session_id]
        if s["owner"] in (None, host_id) or self.leases.get(s["owner"], 0) < time.monotonic():
            s.update(owner=host_id, epoch=s["epoch"] + 1, handoff=False)
            return s["epoch"]
        s["handoff"] = True
        return None

    async def release(self, session_ids, host_id):
        for sid in session_ids:
            if self.sessions[sid]["owner"] == host_id:
                self.sessions[sid].update(owner=None, handoff=False)

    async def drop_host(self, host_id):
        await self.release(list(self.sessions), host_id)

    def _fence(self, session_id, epoch):
        if epoch is not None and self.sessions[session_id]["epoch"] != epoch:
            raise FencedError("moved")

    async def add_message(
        self, session_id, turn_id, role, content, language, status, flags=None, *, epoch=None, language_confidence=None
    ):
        await asyncio.sleep(self.write_delay)
        self._fence(session_id, epoch)
        rows = self.messages_by[session_id]
        old = rows.get((turn_id, role))
        rows[(turn_id, role)] = MessageRow(
            id=old.id if old else sum(map(len, self.messages_by.values())) + 1,
            turn_id=turn_id,
            role=role,
            content=content,
            language=language,
            status=status,
            guardrail_flags=flags or [],
            created_at=datetime.now(UTC),
        )

    async def record_turn(
        self, session_id, turn_id, calls, content, language, status, flags=None, *, epoch=None, response=None
    ):
        await self.add_message(session_id, turn_id, "assistant", content, language, status, flags, epoch=epoch)
        if response is not None:
            self.answers[(session_id, turn_id)] = response

    async def settle(self, session_id, turn_id, content, status, epoch=None):
        self._fence(session_id, epoch)
        row = self.messages_by[session_id].get((turn_id, "assistant"))
        if row is None:
            return False
        self.messages_by[session_id][(turn_id, "assistant")] = row.model_copy(
            update={"content": content, "status": status}
        )
        return True

    async def messages(self, session_id, limit=1000):
        return sorted(self.messages_by[session_id].values(), key=lambda m: m.id)[-limit:]

    async def idempotent_response(self, session_id, turn_id):
        return self.answers.get((session_id, turn_id))


@pytest.fixture(scope="module")
def stub_runner():
    from rag_index.pipeline import local_runner

    return local_runner(load_settings(REPO_ROOT / "configs" / "stub.yaml"))


def _host(runner, store, host_id="h1", **tier):
    return SessionHost(host_id, runner, store, SessionTierSettings(**({"lease_ttl_s": 30.0} | tier)))


def _turn(text="what is the stub answer", **kw) -> TurnRequest:
    return TurnRequest(turn_id=uuid.uuid4().hex, text=text, **kw)


async def test_turns_of_one_conversation_run_one_at_a_time_in_order(stub_runner):
    store = FakeStore()
    store.write_delay = 0.005  # let the turns overlap if nothing serialises them
    host = _host(stub_runner, store)
    await host.start()
    sid = store.new_session()
    turns = [_turn(f"question {i} about the stub answer") for i in range(8)]
    outs = await asyncio.gather(*(host.answer(sid, t) for t in turns))
    assert [o.turn_id for o in outs] == [t.turn_id for t in turns]
    rows = await store.messages(sid)
    # user, assistant, user, assistant ... of each turn in arrival order: never interleaved
    assert [(r.turn_id, r.role) for r in rows] == [(t.turn_id, role) for t in turns for role in ("user", "assistant")]
    assert outs[-1].response.metadata.context_messages == 6  # history_turns of the 14 before it
    await host.close()


async def test_lru_passivation_and_rehydration(stub_runner):
    store = FakeStore()
    host = _host(stub_runner, store, max_active=2)
    await host.start()
    a, b, c = (store.new_session() for _ in range(3))
    for sid in (a, b, c):
        await host.answer(sid, _turn())
    assert host.info()["active"] == 2 and host.passivations == 1
    await asyncio.sleep(0.01)  # the release runs in the background
    assert store.sessions[a]["owner"] is None  # released: any host may take it at once
    out = await host.answer(a, _turn())  # reactivated with its whole history
    assert out.response.metadata.context_messages == 2
    assert store.sessions[a]["epoch"] == 2
    await host.close()


async def test_idle_conversations_are_passivated(stub_runner):
    store = FakeStore()
    host = _host(stub_runner, store, idle_seconds=0.05, lease_ttl_s=0.15)
    await host.start()
    sid = store.new_session()
    await host.answer(sid, _turn())
    assert host.info()["active"] == 1
    deadline = time.monotonic() + 5
    while host.info()["active"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.02)  # the release runs in the background
    assert host.info()["active"] == 0 and store.sessions[sid]["owner"] is None
    await host.close()


async def test_a_live_owner_hands_off_and_a_dead_one_is_taken_over(stub_runner):
    store = FakeStore()
    first = _host(stub_runner, store, "h1", lease_ttl_s=0.3)
    second = _host(stub_runner, store, "h2", lease_ttl_s=0.3, handoff_wait_s=5)
    await first.start()
    await second.start()
    sid = store.new_session()
    await first.answer(sid, _turn())
    out = await second.answer(sid, _turn())  # h1 is alive: it is asked, hands off, h2 waits then serves
    assert out.response.metadata.context_messages == 2 and store.sessions[sid]["owner"] == "h2"
    assert first.info()["active"] == 0
    # h2 dies silently: its lease lapses, h1 takes over with a newer epoch.
    second._maintainer.cancel()
    epoch = store.sessions[sid]["epoch"]
    await asyncio.sleep(0.35)
    out = await first.answer(sid, _turn())
    assert out.response.metadata.context_messages == 4 and store.sessions[sid]["epoch"] == epoch + 1
    # h2 comes back believing it still holds the conversation: its writes are fenced off and it
    # forgets the conversation instead of answering for it.
    second._lease_ok_until = time.monotonic() + 60
    with pytest.raises(FencedError):
        await second.answer(sid, _turn())
    assert second.info()["active"] == 0
    assert len(await store.messages(sid)) == 6
    await first.close()


async def test_a_held_conversation_that_is_never_released_answers_busy(stub_runner):
    store = FakeStore()
    holder = _host(stub_runner, store, "h1", lease_ttl_s=30)
    other = _host(stub_runner, store, "h2", handoff_wait_s=0.2)
    await holder.start()
    await other.start()
    holder._maintainer.cancel()  # alive (lease valid) but never looks at handoff requests
    sid = store.new_session()
    await holder.answer(sid, _turn())
    with pytest.raises(SessionBusy):
        await other.answer(sid, _turn())


async def test_idempotent_answer_is_stored_and_returned(stub_runner):
    store = FakeStore()
    host = _host(stub_runner, store)
    await host.start()
    sid = store.new_session()
    turn = _turn(idempotent=True)
    first = await host.answer(sid, turn)
    again = await host.answer(sid, turn)
    # The stored answer is the same answer, kept without its audio (a retry asks /tts for it).
    assert first.audio is not None and again.audio is None and again.flags == [*first.flags, "audio_not_stored"]
    assert again.model_copy(update={"audio": first.audio, "flags": first.flags}) == first
    assert len(await store.messages(sid)) == 2


async def test_voice_answers_are_stored_as_heard(stub_runner):
    store = FakeStore()
    host = _host(stub_runner, store)
    await host.start()
    sid = store.new_session()
    turn = _turn(channel="voice")
    batches = [b async for b in host.stream(sid, turn)]
    assert batches and batches[-1][-1].type == "turn.done"
    row = (await store.messages(sid))[-1]
    assert (row.role, row.status, row.content) == ("assistant", "interrupted", "")  # nothing confirmed heard yet
    await host.settle(sid, turn.turn_id, "This is the stub answer.", True)
    row = (await store.messages(sid))[-1]
    assert (row.status, row.content) == ("complete", "This is the stub answer.")
    out = await host.answer(sid, _turn())
    assert out.response.metadata.context_messages == 2


async def test_memory_per_active_conversation(stub_runner):
    store = FakeStore()
    host = _host(stub_runner, store)
    await host.start()
    sessions = [store.new_session() for _ in range(300)]
    await host.answer(sessions[0], _turn())  # warm the shared runner
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for sid in sessions[1:]:
        await host.conversation(sid)
        host._active[sid].history = [("t", "user", "x" * 60), ("t", "assistant", "y" * 200)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per = grown / (len(sessions) - 1)
    assert host.info()["active"] == 300
    assert per < 100 * 1024, per  # a conversation in memory costs kilobytes, not a process


async def test_a_turn_run_again_on_a_new_host_is_not_remembered_twice(stub_runner):
    """The first host stored a turn and died before answering the caller; the retry runs the same
    turn id on the next host, which rehydrated that turn: the context holds it once."""
    store = FakeStore()
    sid = store.new_session()
    first = _host(stub_runner, store, "h1")
    await first.start()
    turn = _turn()
    await first.answer(sid, turn)
    store.leases["h1"] = 0  # h1 dies
    second = _host(stub_runner, store, "h2")
    await second.start()
    await second.answer(sid, turn)  # the ingress's retry: same turn id
    out = await second.answer(sid, _turn())
    assert out.response.metadata.context_messages == 2
    assert len(await store.messages(sid)) == 4
