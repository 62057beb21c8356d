"""Who may call and what they may do, without Ray or servers: keys (cached), tenants' sessions,
voice-call admission. The database is a fake with the repository's contract."""

from datetime import UTC, datetime

import pytest

from samvad.api.gate import AuthError, Gate
from samvad.errors import NotFoundError
from samvad.settings import Settings
from samvad.storage.repository import ApiKeyRow, SessionRow

pytestmark = pytest.mark.unit
NOW = datetime.now(UTC)
S1 = "6f1c2a3e-0000-4000-8000-000000000001"


class FakeDb:
    def __init__(self) -> None:
        self.keys = {
            "sk_a": ApiKeyRow(id=1, name="a", prefix="sk_a", created_at=NOW, revoked_at=None, max_voice_sessions=1),
            "sk_b": ApiKeyRow(id=2, name="b", prefix="sk_b", created_at=NOW, revoked_at=None),
        }
        self.sessions = {
            S1: (1, SessionRow(id=S1, language="en-IN", mode="formal", voice=None, created_at=NOW, updated_at=NOW))
        }
        self.reads = 0

    async def verify_key(self, key):
        self.reads += 1
        return self.keys.get(key)

    async def get_session(self, session_id, api_key_id=None):
        self.reads += 1
        owner, row = self.sessions.get(session_id, (None, None))
        if row is None or owner != api_key_id:
            raise NotFoundError(f"no session {session_id!r}", code="session_not_found")
        return row


async def test_keys_are_checked_and_cached():
    db = FakeDb()
    gate = Gate(Settings(), db)
    with pytest.raises(AuthError):
        await gate.admit(None, "1.2.3.4")
    with pytest.raises(AuthError):
        await gate.admit("sk_wrong", "1.2.3.4")
    assert (await gate.admit("sk_a", "1.2.3.4")).id == 1
    reads = db.reads
    assert (await gate.admit("sk_a", "1.2.3.4")).id == 1 and db.reads == reads  # no read per request
    assert await gate.key("x" * 300) is None  # oversized keys are not even looked up


async def test_a_session_is_found_only_by_its_own_key():
    gate = Gate(Settings(), FakeDb())
    assert (await gate.session(S1, 1)).id == S1
    assert (await gate.session(S1.upper(), 1)).id == S1  # the same session, spelled otherwise
    with pytest.raises(NotFoundError) as other:
        await gate.session(S1, 2)
    with pytest.raises(NotFoundError) as missing:
        await gate.session("nope", 2)
    assert other.value.code == missing.value.code == "session_not_found"  # indistinguishable


async def test_voice_calls_are_limited_per_key():
    db = FakeDb()
    gate = Gate(Settings(), db)
    a = db.keys["sk_a"]
    assert await gate.calls.open_call(a, "call-1")
    assert not await gate.calls.open_call(a, "call-2")  # the key's own limit: one live call
    await gate.calls.close_call(a, "call-1")
    assert await gate.calls.open_call(a, "call-3")


async def test_metrics_are_read_once_a_second_however_many_ask():
    import asyncio

    from samvad.api.frontend import Frontend

    reads = 0

    async def read() -> str:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.01)
        return "samvad_up 1\n"

    front = Frontend.__new__(Frontend)  # only its metrics cache: no database, no backend
    front._metrics, front._metrics_lock = (0.0, ""), asyncio.Lock()
    texts = await asyncio.gather(*(front.metrics_text(read) for _ in range(200)))
    assert set(texts) == {"samvad_up 1\n"} and reads == 1
