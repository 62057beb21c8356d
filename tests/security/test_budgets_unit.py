"""Attacks on the pieces that need no server: an utterance that never ends, a transcription
nobody waits for, invalid keys that cost a lookup each, a Redis that is down, clients that lie
about their address, and values too big to cache."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from samvad.api.addresses import client_ip
from samvad.api.gate import AuthError, Gate, LimiterUnavailable
from samvad.errors import RateLimitedError
from samvad.providers.local.vad import Endpointer, SileroVad, SpeechEnded, SpeechStarted
from samvad.settings import Settings
from samvad.storage.repository import ApiKeyRow

pytestmark = pytest.mark.unit
NOW = datetime.now(UTC)


class _AlwaysSpeech(SileroVad):
    """A caller (or a noise source) that never pauses."""

    def probability(self, frame) -> float:
        return 0.99


def test_an_utterance_that_never_ends_is_cut_at_the_budget(settings):
    ep = Endpointer(_AlwaysSpeech(16000), settings.vad, max_seconds=3.0)
    events = []
    for _ in range(10):  # ten seconds of "speech" in one-second frames
        events += ep.feed(np.full(16000, 0.1, dtype=np.float32))
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert ends and all(e.forced for e in ends)
    assert all(len(e.audio) <= 3.0 * 16000 for e in ends)
    assert isinstance(events[0], SpeechStarted)
    assert len(ep.utterance_so_far()) <= 3.0 * 16000  # what early ASR may be sent is bounded too


@pytest.mark.models
async def test_a_cancelled_transcription_stops_using_the_cpu(settings):
    from samvad.audio import Audio
    from samvad.providers.local.whisper import WhisperSTT

    stt = WhisperSTT(settings.asr.whisper)
    rng = np.random.default_rng(0)
    noise = Audio((rng.standard_normal(16000 * 60) * 0.1).astype(np.float32), 16000)  # two 30 s windows
    task = asyncio.create_task(stt.transcribe(noise, "en-IN", []))
    await asyncio.sleep(0.3)
    t0 = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # returns once the decode has stopped (at most one window later)
    stopped_in = time.perf_counter() - t0
    cpu0 = time.process_time()
    await asyncio.sleep(1.0)
    assert time.process_time() - cpu0 < 0.3, "the decode went on after the call was cancelled"
    assert stopped_in < 15


@pytest.mark.models
async def test_a_long_upload_of_noise_is_not_read_back_as_words(settings):
    """Past the short window, a window whose text loops is decoded again at most once (at the
    hottest temperature): with one temperature Whisper base read 60 s of noise back as its
    vocabulary prompt; with Whisper's six it took ~39 s of CPU to say nothing."""
    from samvad.audio import Audio
    from samvad.providers.local.whisper import WhisperSTT

    assert settings.asr.whisper.temperatures == [0.0, 1.0]
    noise = Audio((np.random.default_rng(0).standard_normal(16000 * 60) * 0.1).astype(np.float32), 16000)
    assert (await WhisperSTT(settings.asr.whisper).transcribe(noise, "en-IN", [])).text == ""


async def test_a_waiting_transcription_that_is_cancelled_never_starts(settings):
    from samvad.audio import Audio
    from samvad.providers.local.whisper import WhisperSTT

    stt = WhisperSTT(settings.asr.whisper)
    speech = Audio(np.zeros(16000, dtype=np.float32), 16000)
    first = asyncio.create_task(stt.transcribe(speech, "en-IN", []))
    queued = [asyncio.create_task(stt.transcribe(speech, "en-IN", [])) for _ in range(20)]
    await asyncio.sleep(0)
    for t in queued:
        t.cancel()
    await first
    cpu0 = time.process_time()
    await asyncio.gather(*queued, return_exceptions=True)
    await asyncio.sleep(0.5)
    assert time.process_time() - cpu0 < 0.3  # twenty cancelled calls cost nothing


class _Db:
    def __init__(self, good: str = "sk_good") -> None:
        self.lookups, self.good = 0, good
        self.row = ApiKeyRow(id=7, name="k", prefix="sk", created_at=NOW, revoked_at=None)

    async def verify_key(self, key):
        self.lookups += 1
        return self.row if key == self.good else None


async def test_a_bad_key_is_looked_up_once_then_remembered():
    db = _Db()
    gate = Gate(Settings(), db)
    for _ in range(50):
        with pytest.raises(AuthError):
            await gate.admit("sk_guess", "198.51.100.1")
    assert db.lookups == 1
    for bad in ("ключ", "a" * 300, "sk\x00x"):  # not even looked up
        with pytest.raises(AuthError):
            await gate.admit(bad, "198.51.100.1")
    assert db.lookups == 1


async def test_key_guessing_from_one_address_is_refused_before_any_lookup(redis_url):
    good = f"sk_good_{uuid.uuid4().hex}"  # never verified before, on a Redis that may outlive runs
    db = _Db(good)
    s = Settings(redis_url=redis_url, limits={"auth_failures_per_minute": 5})
    gate = Gate(s, db)
    ip = f"203.0.113.{int(time.time()) % 250}"
    for i in range(5):
        with pytest.raises(AuthError):
            await gate.admit(f"sk_guess_{i}_{time.time()}", ip)
    lookups = db.lookups
    with pytest.raises(RateLimitedError):
        await gate.admit(good, ip)  # a key never verified: the address gets no new lookup
    assert db.lookups == lookups
    assert (await gate.admit(good, "203.0.113.254")).id == 7  # other addresses are not shut
    # Once verified (here from another address), the good key is admitted even from the shut
    # one, by this replica (its cache) and by another (the last-known row in Redis), still with
    # no lookup: the failures did not lock it out.
    assert (await gate.admit(good, ip)).id == 7
    assert (await Gate(s, db).admit(good, ip)).id == 7
    assert db.lookups == lookups + 1


async def test_speculative_asr_is_charged_to_the_key_without_starving_its_turns(redis_url):
    """Early transcripts and partials cost ASR work: each takes from the key's own bucket for it
    (at the key's rate). Once spent, the work is skipped (False), and the key's turns go on."""
    db = _Db(f"sk_good_{uuid.uuid4().hex}")
    db.row = db.row.model_copy(update={"id": int(time.time() * 1000) % 1_000_000_000, "requests_per_minute": 3})
    gate = Gate(Settings(redis_url=redis_url, limits={"speculative_asr_per_minute": 3}), db)
    assert [await gate.charge_speculative(db.row) for _ in range(4)] == [True, True, True, False]
    await gate.charge(db.row)  # a turn: its own bucket, untouched by the speculative work


async def test_redis_down_the_key_limit_fails_closed_and_the_ip_limit_open():
    db = _Db()
    down = "redis://127.0.0.1:1/0"
    with pytest.raises(LimiterUnavailable) as err:
        await Gate(Settings(redis_url=down), db).admit("sk_good", "198.51.100.2")
    assert err.value.status == 503 and err.value.retry_after >= 1
    # fail_open: true lets the key through too; ip_fail_open: false refuses at the IP already.
    assert (
        await Gate(Settings(redis_url=down, limits={"fail_open": True}), db).admit("sk_good", "198.51.100.2")
    ).id == 7
    lookups = db.lookups
    with pytest.raises(LimiterUnavailable):
        await Gate(Settings(redis_url=down, limits={"ip_fail_open": False}), db).admit("sk_good", "198.51.100.2")
    assert db.lookups == lookups


@pytest.mark.parametrize(
    "peer,xff,trusted,expected",
    [
        ("198.51.100.7", "1.2.3.4", [], "198.51.100.7"),  # no trusted proxies: the header is ignored
        ("198.51.100.7", "1.2.3.4", ["10.0.0.0/8"], "198.51.100.7"),  # the peer is not a trusted proxy
        ("10.0.0.5", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.5", "6.6.6.6, 1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),  # the client's own entries prove nothing
        ("10.0.0.5", "1.2.3.4, 10.0.0.9", ["10.0.0.0/8"], "1.2.3.4"),  # through two proxies
        ("10.0.0.5", "not-an-ip", ["10.0.0.0/8"], "10.0.0.5"),
        ("10.0.0.5", "", ["10.0.0.0/8"], "10.0.0.5"),
        # One budget per caller: an IPv6 address is its /64, an IPv4-mapped one its IPv4 address.
        ("2001:db8:1:2:aaaa::1", None, [], "2001:db8:1:2::/64"),
        ("10.0.0.5", "2001:db8:1:2:ffff:ffff:ffff:ffff", ["10.0.0.0/8"], "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", None, [], "198.51.100.7"),
        ("::ffff:10.0.0.5", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),  # a mapped proxy is still the proxy
        ("10.0.0.5", "::ffff:1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(peer, xff, trusted, expected):
    assert client_ip(peer, xff, trusted) == expected


async def test_cached_values_have_a_size_cap(redis_url):
    from samvad.storage.cache import Cache

    cache = Cache(redis_url, {"tts": 60}, max_value_bytes=1024)
    await cache.set("tts", "samvad:test:small", b"x" * 1024)
    await cache.set("tts", "samvad:test:big", b"x" * 1025)
    assert await cache.get("samvad:test:small") is not None
    assert await cache.get("samvad:test:big") is None
    await cache.close()


async def test_transcripts_sit_in_redis_sealed(redis_url):
    import redis.asyncio as aioredis

    from samvad.audio import Audio
    from samvad.contracts import Transcript
    from samvad.providers.base import SpeechToText
    from samvad.providers.cached import CachedSTT
    from samvad.storage.cache import Cache

    said = "my card number is 4111 1111 1111 1111"

    class Fixed(SpeechToText):
        name = "fixed"

        async def _transcribe_impl(self, audio, language, rec):
            return Transcript(text=said, language_code="en-IN", confidence=0.9)

    audio = Audio(np.random.default_rng(3).standard_normal(16000).astype(np.float32), 16000)
    cached = CachedSTT(Fixed(model="m"), Cache(redis_url, {"asr": 60}))
    assert (await cached.transcribe(audio, "en-IN", [])).text == said
    calls = []
    assert (await cached.transcribe(audio, "en-IN", calls)).text == said and calls[0].cache_hit
    r = aioredis.Redis.from_url(redis_url)
    values = [await r.get(k) async for k in r.scan_iter("samvad:asr:*")]
    await r.aclose()
    assert values and not any(b"4111" in v or b"card" in v for v in values)


def test_a_stored_idempotent_answer_never_keeps_its_audio():
    from samvad.contracts import LLMResponse
    from samvad.turn_result import AudioOut, TurnOut, stored_answer

    def answer(audio_bytes: int) -> TurnOut:
        return TurnOut(
            session_id="s",
            turn_id="t",
            outcome="complete",
            transcript=None,
            response=LLMResponse(response_text="Your limit is one lakh."),
            audio=AudioOut(sample_rate=22050, seconds=1.0, base64="A" * audio_bytes),
            stages={},
            first_audio_ms=None,
            cost={},
            flags=[],
            calls=[],
        )

    small = TurnOut.model_validate_json(stored_answer(answer(10_000)))
    assert small.audio is None and "audio_not_stored" in small.flags  # even a short one
    silent = answer(0).model_copy(update={"audio": None})
    assert stored_answer(silent) == silent.model_dump_json()  # nothing to strip: kept whole
    big = TurnOut.model_validate_json(stored_answer(answer(5_000_000)))  # e.g. a long answer at 48 kHz
    assert big.audio is None and "audio_not_stored" in big.flags
    assert big.response.response_text == "Your limit is one lakh."
    assert len(stored_answer(answer(5_000_000))) < 64 * 1024
