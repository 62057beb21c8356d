"""Attacks on the running service (the real graph: two ingress and two Sessions replicas, real
PostgreSQL and Redis). Requests that speak for another client address send X-Forwarded-For:
the test client is configured as the one trusted proxy (tests/graph.py)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
import uuid

import httpx
import pytest
import websockets

from tests.e2e.helpers import make_key
from tests.graph import ADMIN_KEY, ALLOWED_ORIGIN, PORT
from tests.security import bombs

pytestmark = pytest.mark.e2e
BASE = f"http://127.0.0.1:{PORT}"
WS = f"ws://127.0.0.1:{PORT}/api/v1/voice-session"


_ADDRESSES = itertools.count()
_FIRST = uuid.uuid4().int % 100_000


def _addr() -> str:
    """A fresh client address, so each test has its own per-IP budgets: never one handed out
    before in this run (a random pick among 250 let two "different" callers collide). From
    198.18.0.0/15, the range set aside for benchmarking, with a random start so that a re-run
    against the same Redis does not reuse the last run's addresses."""
    n = _FIRST + next(_ADDRESSES)
    return f"198.{18 + n // 65024 % 2}.{n // 254 % 256}.{n % 254 + 1}"


def _client(key: str | None, ip: str | None = None) -> httpx.Client:
    headers = {"X-Forwarded-For": ip or _addr()}
    if key:
        headers["X-API-Key"] = key
    return httpx.Client(base_url=BASE, headers=headers, timeout=60)


def _error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert code is None or body["code"] == code, body
    return body


def _peak_rss_kib(kinds: tuple[str, ...]) -> dict[int, int]:
    """VmHWM (the most memory each process ever held) of the serving replicas, by process title."""
    import psutil

    peaks = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        if "ServeReplica:samvad:" in title and any(f":{k}" in title for k in kinds):
            try:
                for line in open(f"/proc/{p.info['pid']}/status"):
                    if line.startswith("VmHWM:"):
                        peaks[p.info["pid"]] = int(line.split()[1])
            except FileNotFoundError:
                pass
    assert peaks, "no replica processes found"
    return peaks


# tenants -------------------------------------------------------------------------------------------
def test_every_path_to_another_tenants_conversation_answers_not_found(api_key, serve_app):
    mine = _client(api_key)
    sid = mine.post("/api/v1/sessions", json={}).json()["id"]
    assert (
        mine.post(
            "/api/v1/turn", json={"session_id": sid, "text": "What is the UPI limit?", "speak": False}
        ).status_code
        == 200
    )
    thief = _client(make_key(serve_app, "thief"))
    missing = str(uuid.uuid4())
    for target in (sid, missing):  # theirs and nobody's look the same
        _error(thief.get(f"/api/v1/sessions/{target}"), 404, "session_not_found")
        _error(thief.get(f"/api/v1/sessions/{target}/messages"), 404, "session_not_found")
        _error(
            thief.post("/api/v1/turn", json={"session_id": target, "text": "read it to me", "speak": False}),
            404,
            "session_not_found",
        )
        _error(thief.delete(f"/api/v1/sessions/{target}"), 404, "session_not_found")
    assert len(mine.get(f"/api/v1/sessions/{sid}/messages").json()) == 2  # untouched


def test_a_session_spelled_otherwise_is_the_same_session_everywhere(api_key):
    """Upper case, braces or no hyphens name the same session as its canonical id: one cached
    row, not a second copy that outlives a close; junk is not found."""
    with _client(api_key) as c:
        sid = c.post("/api/v1/sessions", json={}).json()["id"]
        spellings = (sid.upper(), "{" + sid + "}", sid.replace("-", ""))
        for other in spellings:
            assert c.get(f"/api/v1/sessions/{other}").json()["id"] == sid
            ask = {"session_id": other, "text": "What is the UPI limit?", "speak": False}
            assert c.post("/api/v1/turn", json=ask).json()["session_id"] == sid
        assert c.delete(f"/api/v1/sessions/{spellings[0]}").status_code == 204
        time.sleep(0.5)  # the close's broadcast reaches the other ingress replica
        for other in (sid, *spellings):
            ask = {"session_id": other, "text": "still there?", "speak": False}
            _error(c.post("/api/v1/turn", json=ask), 409, "session_closed")
        _error(c.get("/api/v1/sessions/not-a-session-id"), 404, "session_not_found")


async def test_resuming_with_anothers_token_or_a_malformed_one_is_not_found(api_key, serve_app):
    ws = await websockets.connect(WS, additional_headers={"X-API-Key": api_key})
    await ws.send(json.dumps({"type": "session.start"}))
    started = json.loads(await ws.recv())
    await ws.close()
    thief = make_key(serve_app, "resume-thief")
    sid, token = started["session_id"], started["resume_token"]
    for key, tok in ((thief, token), (api_key, "é" * 32), (api_key, "0" * 4000), (api_key, token[:-1] + "x")):
        ws = await websockets.connect(
            f"{WS}?session_id={sid}&resume_token={tok}", additional_headers={"X-API-Key": key}
        )
        await ws.send(json.dumps({"type": "session.start"}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd.code == 4404, (key == thief, tok[:8])


# audio bombs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,make,code",
    [
        ("flac-8ch-655kHz", bombs.flac_wide, "audio_channels"),
        ("flac-hour-no-length", bombs.flac_without_length, "audio_too_long"),
        ("ogg-10-min", bombs.ogg_long, "audio_too_long"),
        ("wav-8-channels", lambda: bombs.wav(channels=8), "audio_channels"),
        ("wav-384-kHz", lambda: bombs.wav(rate=384000, seconds=0.5), "audio_sample_rate"),
    ],
)
def test_audio_bombs_are_refused_fast_on_every_route(api_key, name, make, code):
    bomb = make()
    before = _peak_rss_kib(("Ingress", "Sessions", "ASR"))
    with _client(api_key) as c:
        t0 = time.perf_counter()
        r = c.post("/api/v1/asr", files={"file": (f"{name}.bin", bomb)}, data={"language": "en-IN"})
        asr_s = time.perf_counter() - t0
        _error(r, 400, code)
        t0 = time.perf_counter()
        r = c.post("/api/v1/turn", json={"audio_base64": base64.b64encode(bomb).decode(), "speak": False})
        turn_s = time.perf_counter() - t0
        _error(r, 400, code)
    assert asr_s < 1.0 and turn_s < 1.0, (asr_s, turn_s)
    after = _peak_rss_kib(("Ingress", "Sessions", "ASR"))
    grown = {pid: after[pid] - before.get(pid, after[pid]) for pid in after}
    assert max(grown.values()) < 150 * 1024, grown  # KiB: the hour of audio (1.3 GiB) was never decoded


def test_a_chunked_body_over_the_budget_is_refused(api_key):
    from samvad.settings import load_settings

    limit = load_settings().service.max_body_bytes

    def body():  # no Content-Length: only the bytes that arrive can be counted
        for _ in range(limit // (1 << 20) + 2):
            yield b"\0" * (1 << 20)

    with _client(api_key) as c:
        boundary = "samvadboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()

        def multipart():
            yield head
            yield from body()
            yield f"\r\n--{boundary}--\r\n".encode()

        r = c.post(
            "/api/v1/asr", content=multipart(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        _error(r, 413, "payload_too_large")
        r = c.post("/api/v1/turn", content=body(), headers={"Content-Type": "application/json"})
        _error(r, 413, "payload_too_large")


# keys --------------------------------------------------------------------------------------------------
def test_keys_in_urls_are_not_accepted(api_key):
    with httpx.Client(base_url=BASE, timeout=30) as c:
        _error(c.get(f"/api/v1/sessions/{uuid.uuid4()}", params={"api_key": api_key}), 401, "unauthorized")


def test_the_deployed_service_applies_its_operations_and_cors_settings(api_key):
    """On the real graph, not a test app: the admin key guards the operations routes, CORS
    answers only the configured origin, and each answer names its replica."""
    with _client(api_key) as c:
        for path in ("/metrics", "/openapi.json", "/docs"):
            _error(c.get(path), 401, "admin_key_required")
            assert c.get(path, headers={"X-Admin-Key": ADMIN_KEY}).status_code == 200, path
        assert c.get("/healthz").status_code == 200  # probes stay open
        preflight = {"Access-Control-Request-Method": "POST"}
        ok = c.options("/api/v1/turn", headers={"Origin": ALLOWED_ORIGIN} | preflight)
        assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        _error(
            c.options("/api/v1/turn", headers={"Origin": "https://evil.example"} | preflight), 403, "origin_not_allowed"
        )
        assert c.get("/healthz").headers["x-samvad-replica"]


def test_an_address_guessing_keys_is_shut_out_before_any_lookup(api_key):
    ip = _addr()
    with _client(api_key) as known:  # the good key has been verified before, from anywhere
        _error(known.get(f"/api/v1/sessions/{uuid.uuid4()}"), 404)
    with _client(None, ip) as c:
        for i in range(30):  # limits.auth_failures_per_minute
            _error(c.get("/api/v1/sessions/x", headers={"X-API-Key": f"sk_samvad_guess{i}"}), 401)
        # Another guess gets no lookup at all ...
        body = _error(c.get("/api/v1/sessions/x", headers={"X-API-Key": "sk_samvad_guess-more"}), 429, "rate_limited")
        assert "failed API-key attempts" in body["message"]
        # ... but a key that verifies is not locked out by what others did from its address
        # (a NAT, a carrier's egress, a proxy): the failures are counted, the good key admitted.
        _error(c.get(f"/api/v1/sessions/{uuid.uuid4()}", headers={"X-API-Key": api_key}), 404, "session_not_found")
    with _client(api_key) as other:  # another address is not affected
        _error(other.get(f"/api/v1/sessions/{uuid.uuid4()}"), 404)


def test_an_ipv6_caller_is_one_budget_per_64_and_a_mapped_ipv4_is_its_ipv4(api_key):
    """A host with an IPv6 /64 has 2^64 addresses to rotate through: its failures count against
    the prefix. An IPv4-mapped IPv6 address is the IPv4 address it maps."""
    n = uuid.uuid4().int
    prefix = f"2001:db8:{n % 65536:x}:{(n >> 16) % 65536:x}"
    for i in range(30):
        with _client(None, f"{prefix}::{i + 1:x}") as c:
            _error(c.get("/api/v1/sessions/x", headers={"X-API-Key": f"sk_samvad_v6guess{i}"}), 401)
    with _client(None, f"{prefix}:ffff:ffff:ffff:ffff") as c:  # another address of the same /64
        _error(c.get("/api/v1/sessions/x", headers={"X-API-Key": "sk_samvad_v6guess-more"}), 429, "rate_limited")
    ip = _addr()
    for i in range(30):
        with _client(None, f"::ffff:{ip}") as c:
            _error(c.get("/api/v1/sessions/x", headers={"X-API-Key": f"sk_samvad_mapped{i}"}), 401)
    with _client(None, ip) as c:
        _error(c.get("/api/v1/sessions/x", headers={"X-API-Key": "sk_samvad_mapped-more"}), 429, "rate_limited")


def test_readyz_flood_is_one_ping_a_second(serve_app, db):
    def pings() -> int:
        return db("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()")[0]["n"]

    with httpx.Client(base_url=BASE, timeout=30) as c:
        t0 = time.perf_counter()
        codes = [c.get("/readyz").status_code for _ in range(300)]
        elapsed = time.perf_counter() - t0
    assert set(codes) == {200}
    assert elapsed < 30
    assert pings() < 40  # the probes opened no connections of their own


def test_revocation_is_immediate_on_every_replica_and_ends_live_calls(serve_app, servers):
    from samvad.api.revocation import publish_revocation
    from samvad.settings import load_settings, secret
    from samvad.storage.repository import Repository
    from testkit import aio

    key = make_key(serve_app, "to-revoke")
    with _client(key) as c:
        for _ in range(6):  # every ingress replica has the key cached (and Redis its last-known row)
            _error(c.get(f"/api/v1/sessions/{uuid.uuid4()}"), 404)

    async def call_and_revoke():
        ws = await websockets.connect(WS, additional_headers={"X-API-Key": key})
        await ws.send(json.dumps({"type": "session.start"}))
        assert json.loads(await ws.recv())["type"] == "session.started"
        repo = await Repository.connect(serve_app, secret(load_settings().service, "key"), max_size=1)
        key_id = next(k.id for k in await repo.list_keys() if k.name == "to-revoke")
        assert await repo.revoke_key(key_id)
        await repo.close()
        await publish_revocation(servers.redis_url, key_id)  # what `samvad keys revoke` does
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        return closed.value.rcvd.code

    assert aio.run(call_and_revoke) == 4401
    with _client(key) as c:
        for _ in range(6):
            _error(c.get(f"/api/v1/sessions/{uuid.uuid4()}"), 401, "unauthorized")
        # With the database down, the last-known row in Redis does not bring the key back, even
        # where a replica's memory of the bad key has lapsed: its tombstone answers.
        from samvad.api.gate import BAD_KEY_CACHE_S

        time.sleep(BAD_KEY_CACHE_S + 0.5)
        servers.stop_postgres()
        try:
            for _ in range(4):
                _error(c.get(f"/api/v1/sessions/{uuid.uuid4()}"), 401, "unauthorized")
        finally:
            servers.start_postgres()


# sessions ----------------------------------------------------------------------------------------------
def test_open_sessions_are_capped_per_key_and_closing_one_frees_it(serve_app):
    with _client(make_key(serve_app, "capped", max_open_sessions=3)) as c:
        ids = [c.post("/api/v1/sessions", json={}).json()["id"] for _ in range(3)]
        _error(c.post("/api/v1/sessions", json={}), 429, "too_many_sessions")
        _error(c.post("/api/v1/turn", json={"text": "hi", "speak": False}), 429, "too_many_sessions")
        for _ in range(6):  # every ingress replica now has the session's row cached
            assert c.get(f"/api/v1/sessions/{ids[0]}").status_code == 200
        assert c.delete(f"/api/v1/sessions/{ids[0]}").status_code == 204
        for _ in range(4):  # whichever replica answers, the closed session takes no turn
            _error(
                c.post("/api/v1/turn", json={"session_id": ids[0], "text": "hi", "speak": False}), 409, "session_closed"
            )
        assert c.post("/api/v1/sessions", json={}).status_code == 201


def test_session_creation_has_its_own_rate(serve_app):
    with _client(make_key(serve_app, "slow-opener", sessions_per_minute=2)) as c:
        assert [c.post("/api/v1/sessions", json={}).status_code for _ in range(2)] == [201, 201]
        _error(c.post("/api/v1/sessions", json={}), 429, "rate_limited")
        _error(c.get(f"/api/v1/sessions/{uuid.uuid4()}"), 404)  # other requests still pass


def test_a_retry_with_its_idempotency_key_is_not_charged_a_new_session(serve_app):
    """The client retry contract holds under the new-session limit: a first turn (no session
    id) or a session open retried with its Idempotency-Key gets its earlier answer, however
    often it is sent, and opens nothing new."""
    with _client(make_key(serve_app, "retrying-opener", sessions_per_minute=2)) as c:
        body, key = (
            {"text": "What is the UPI limit per day?", "speak": False},
            {"Idempotency-Key": f"first-{uuid.uuid4().hex}"},
        )
        first = c.post("/api/v1/turn", json=body, headers=key)
        opened = c.post("/api/v1/sessions", json={}, headers={"Idempotency-Key": f"open-{uuid.uuid4().hex}"})
        assert first.status_code == 200 and opened.status_code == 201, first.text + opened.text
        for _ in range(3):  # the bucket (2 a minute) is empty: only retries can pass
            again = c.post("/api/v1/turn", json=body, headers=key)
            assert again.status_code == 200 and again.json()["turn_id"] == first.json()["turn_id"], again.text
            reopened = c.post(
                "/api/v1/sessions", json={}, headers={"Idempotency-Key": opened.request.headers["Idempotency-Key"]}
            )
            assert reopened.status_code == 201 and reopened.json()["id"] == opened.json()["id"], reopened.text
        _error(c.post("/api/v1/sessions", json={}), 429, "rate_limited")  # a new one is still limited


# voice admission ---------------------------------------------------------------------------------------
async def _closed_code(ws, timeout: float = 10.0) -> int:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return closed.value.rcvd.code


async def test_a_socket_that_never_authenticates_is_closed_within_seconds():
    ws = await websockets.connect(WS, additional_headers={"X-Forwarded-For": _addr()})
    t0 = time.perf_counter()
    assert await _closed_code(ws) == 4400
    assert time.perf_counter() - t0 < 4


async def test_a_key_in_the_socket_url_is_not_accepted(api_key):
    ws = await websockets.connect(f"{WS}?api_key={api_key}", additional_headers={"X-Forwarded-For": _addr()})
    await ws.send(json.dumps({"type": "session.start"}))
    assert await _closed_code(ws) == 4401


async def test_open_sockets_per_address_are_capped(api_key):
    from samvad.settings import load_settings

    cap, ip = load_settings().limits.max_sockets_per_ip, _addr()
    # One more than the cap, at once: a socket is accepted before its slot is taken (a refusal is
    # a close code), so which one is refused is a race; that exactly one is, is not. (A socket
    # that sends nothing is closed after 2 s, freeing its slot: all are opened well within that.)
    sockets = await asyncio.gather(
        *(websockets.connect(WS, additional_headers={"X-Forwarded-For": ip}) for _ in range(cap + 1))
    )
    other = await websockets.connect(WS, additional_headers={"X-Forwarded-For": _addr(), "X-API-Key": api_key})
    await other.send(json.dumps({"type": "session.start"}))
    assert json.loads(await other.recv())["type"] == "session.started"  # another address is not held back
    await other.close()
    codes = await asyncio.gather(*(_closed_code(ws) for ws in sockets))
    assert sorted(codes) == [4400] * cap + [4429], codes


async def test_connecting_and_every_turn_charge_the_keys_rate_limit(serve_app):
    key = make_key(serve_app, "voice-metered", 4)  # 4 requests a minute: one more every 15 s
    ws = await websockets.connect(WS, additional_headers={"X-API-Key": key, "X-Forwarded-For": _addr()})
    await ws.send(json.dumps({"type": "session.start"}))
    assert json.loads(await ws.recv())["type"] == "session.started"  # 1
    outcomes = []
    for _ in range(4):  # 2, 3, 4 and one too many; each is charged before its answer starts
        await ws.send(json.dumps({"type": "text.input", "text": "What is the UPI limit?"}))
        while True:
            ev = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if ev["type"] in ("response.delta", "error"):
                outcomes.append(ev.get("code", ev["type"]))
                break
    await ws.close()
    assert outcomes == ["response.delta", "response.delta", "response.delta", "rate_limited"]
    again = await websockets.connect(WS, additional_headers={"X-API-Key": key, "X-Forwarded-For": _addr()})
    await again.send(json.dumps({"type": "session.start"}))
    assert await _closed_code(again) == 4429


# caches, voices, errors ------------------------------------------------------------------------------
def test_the_tts_cache_does_not_tell_one_tenant_what_another_said(api_key, serve_app):
    text = f"Your appointment is confirmed for slot {uuid.uuid4().hex[:6]}."
    with _client(api_key) as a, _client(make_key(serve_app, "cache-prober")) as b:
        assert a.post("/api/v1/tts", json={"text": text}).headers["X-Cache"] == "miss"
        assert a.post("/api/v1/tts", json={"text": text}).headers["X-Cache"] == "hit"
        assert b.post("/api/v1/tts", json={"text": text}).headers["X-Cache"] == "miss"


@pytest.mark.parametrize("voice", ["../../../../etc/passwd", "en-us/../../x", "%2e%2e%2f", "a b", "x" * 65])
def test_voices_never_reach_a_path_unchecked(api_key, voice):
    with _client(api_key) as c:
        _error(c.post("/api/v1/tts", json={"text": "hello", "voice": voice}), 422, "validation_error")


def test_only_voices_the_engine_ships_are_used(api_key):
    with _client(api_key) as c:
        _error(c.post("/api/v1/tts", json={"text": "hello", "voice": "zz-nonexistent"}), 400, "unknown_voice")
        assert c.post("/api/v1/tts", json={"text": "hello", "voice": "en-us+f3"}).status_code == 200
