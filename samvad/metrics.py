"""Samvad's metrics: names, kinds, tags, and the calls that record them.

The core does not import Ray: the process that hosts it installs a factory (`use`) that makes
the metric objects. Under Ray that is `actors.telemetry`, which makes `ray.util.metrics`
objects: Ray's metrics agent on each node then exports the series of every process on it
(ingress, session-host and stage replicas), prefixed `ray_` and labelled with the worker, and
Prometheus sums them (`sum by (outcome) (rate(ray_samvad_turns_total[5m]))`). A plain
prometheus_client metric would only be seen in its own process. Without a factory (unit tests,
the CLI) recording does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from samvad.events import TurnDoneEvent
    from samvad.turn_result import TurnOut

log = logging.getLogger(__name__)

_MS: list[float] = [5, 10, 25, 50, 100, 250, 500, 750, 1000, 1500, 2500, 5000, 10000, 30000]

# name -> (kind, description, tag keys, histogram boundaries in ms)
SPECS: dict[str, tuple[str, str, tuple[str, ...], list[float] | None]] = {
    "samvad_turns_total": ("counter", "turns by outcome", ("outcome", "channel"), None),
    "samvad_turn_ms": ("histogram", "whole turn, wall time from its start to turn.done", ("channel",), _MS),
    "samvad_first_audio_ms": (
        "histogram",
        "end of speech (voice) or turn start (REST) to the first audio byte",
        ("measure",),
        _MS,
    ),
    "samvad_stage_ms": (
        "histogram",
        "provider call latency by stage and provider; part=ttfb|total",
        ("stage", "provider", "part"),
        _MS,
    ),
    "samvad_provider_calls_total": ("counter", "provider calls by outcome", ("stage", "provider", "outcome"), None),
    "samvad_provider_retries_total": ("counter", "retries inside provider calls", ("stage", "provider"), None),
    "samvad_cache_total": ("counter", "stage cache lookups by result", ("stage", "result"), None),
    "samvad_cost_total": ("counter", "provider cost by currency", ("stage", "provider", "currency"), None),
    "samvad_guardrail_actions_total": ("counter", "guardrail findings by check and action", ("check", "action"), None),
    "samvad_circuit_state": (
        "gauge",
        "circuit breaker per provider: 0 closed, 1 half-open, 2 open",
        ("stage", "provider"),
        None,
    ),
    "samvad_retrieval_failures_total": (
        "counter",
        "searches a vector store could not answer (reason: the failure, or circuit_open)",
        ("store", "reason"),
        None,
    ),
    "samvad_live_voice_sessions": ("gauge", "open WebSocket voice sessions (per ingress replica; sum them)", (), None),
    "samvad_http_ms": ("histogram", "HTTP request latency by route", ("route", "status"), _MS),
    "samvad_rate_limited_total": ("counter", "requests refused by a rate limit", ("scope",), None),
    "samvad_auth_failures_total": ("counter", "credentials refused (scope: api_key, phone)", ("scope",), None),
    "samvad_rate_limit_degraded_total": (
        "counter",
        "rate-limit checks decided by the failure policy (Redis down)",
        ("policy",),
        None,
    ),
    "samvad_early_asr_total": (
        "counter",
        "voice-session early ASR runs: used for the turn or discarded (caller went on)",
        ("result",),
        None,
    ),
    "samvad_partial_asr_total": (
        "counter",
        "voice-session partial transcripts while the caller speaks: sent, "
        "skipped (no idle engine) or stale (the utterance moved on)",
        ("result",),
        None,
    ),
    "samvad_realtime_asr_total": (
        "counter",
        "voice-call utterances streamed to the realtime recogniser: ok, or "
        "failed (the REST recogniser transcribed it instead)",
        ("result",),
        None,
    ),
    "samvad_vad_frames_total": (
        "counter",
        "voice-call audio frames scored by the VAD model (per ingress replica)",
        (),
        None,
    ),
    "samvad_vad_runs_total": (
        "counter",
        "VAD model runs: frames / runs is how many calls' frames one run scored",
        (),
        None,
    ),
    "samvad_store_write_failures_total": (
        "counter",
        "database writes refused (the database unreachable): the request failed",
        ("action",),
        None,
    ),
    "samvad_active_conversations": (
        "gauge",
        "conversations held in memory by a session host (sum over hosts)",
        (),
        None,
    ),
    "samvad_conversation_activations_total": (
        "counter",
        "conversations activated (rehydrated) or passivated by a session host",
        ("event",),
        None,
    ),
}
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}

# (kind, name, description, tag keys, boundaries) -> an object with inc / observe / set
Factory = Callable[[str, str, str, tuple[str, ...], list[float] | None], Any]
_factory: Factory | None = None
_made: dict[str, Any] = {}


def use(factory: Factory | None) -> None:
    """Install the metric factory of this process (None: record nothing)."""
    global _factory
    _factory = factory
    _made.clear()


def _metric(name: str) -> Any:
    metric = _made.get(name)
    if metric is None:
        if _factory is None:
            return None
        kind, description, tags, bounds = SPECS[name]
        metric = _made[name] = _factory(kind, name, description, tags, bounds)
    return metric


def _record(name: str, method: str, value: float, tags: dict[str, str]) -> None:
    try:
        metric = _metric(name)
        if metric is not None:
            getattr(metric, method)(value, tags={k: str(v) for k, v in tags.items()} or None)
    except Exception:  # noqa: BLE001 - a metric must never fail a turn
        log.debug("metric %s not recorded", name, exc_info=True)


def inc(name: str, value: float = 1.0, **tags: str) -> None:
    if value > 0:
        _record(name, "inc", value, tags)


def observe(name: str, value: float, **tags: str) -> None:
    _record(name, "observe", value, tags)


def gauge(name: str, value: float, **tags: str) -> None:
    _record(name, "set", value, tags)


def count_turn(done: TurnDoneEvent | TurnOut, channel: str, elapsed_ms: float) -> None:
    """Everything one finished turn (a TurnDoneEvent, `elapsed_ms` after it started) says:
    outcome, guardrail findings, and per provider call its latency, outcome, retries, cache
    result and cost. Flags carry check names and kinds only, never the text that triggered them."""
    inc("samvad_turns_total", outcome=done.outcome, channel=channel)
    if done.first_audio_ms is not None and channel == "rest":
        observe("samvad_first_audio_ms", done.first_audio_ms, measure="turn_start")
    # Wall time, not the sum of stage times: stages overlap (TTS speaks while the LLM writes).
    observe("samvad_turn_ms", elapsed_ms, channel=channel)
    for flag in done.response.guardrail_flags:
        inc("samvad_guardrail_actions_total", check=flag.check, action=flag.action)
    for c in done.calls:
        inc("samvad_provider_calls_total", stage=c.stage, provider=c.provider, outcome=c.outcome)
        inc("samvad_provider_retries_total", c.retries, stage=c.stage, provider=c.provider)
        if c.stage in ("tts", "translation", "asr"):
            inc("samvad_cache_total", stage=c.stage, result="hit" if c.cache_hit else "miss")
        if not c.cache_hit:
            observe("samvad_stage_ms", c.latency_ms, stage=c.stage, provider=c.provider, part="total")
            if c.ttfb_ms is not None:
                observe("samvad_stage_ms", c.ttfb_ms, stage=c.stage, provider=c.provider, part="ttfb")
        inc("samvad_cost_total", c.cost, stage=c.stage, provider=c.provider, currency=c.currency)


def circuit(stage: str, provider: str, state: str) -> None:
    gauge("samvad_circuit_state", CIRCUIT_STATES[state], stage=stage, provider=provider)


def select_families(text: str, prefixes: tuple[str, ...] = ("ray_samvad_", "ray_serve_")) -> str:
    """The metric families of a Prometheus text export whose names start with one of
    `prefixes` (with their HELP/TYPE lines)."""
    out, keep = [], False
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            keep = line.split(" ", 3)[2].startswith(prefixes)
        elif line and not line.startswith("#"):
            keep = line.startswith(prefixes)
        if keep:
            out.append(line)
    return "\n".join(out) + "\n"
