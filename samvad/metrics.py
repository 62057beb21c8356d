"""Prometheus metrics of this process (exposed at /metrics by the ingress).

Always use them as `metrics.NAME` (module attribute): Ray pickles Serve ingress classes by
value, and a metric object captured that way would be a copy outside the process registry.
"""

from prometheus_client import Counter, Gauge, Histogram

TURNS = Counter("samvad_turns_total", "turns by outcome", ["outcome"])
TTS_CACHE = Counter("samvad_tts_cache_total", "TTS cache lookups at the API by result", ["result"])
HTTP_SECONDS = Histogram("samvad_http_seconds", "HTTP request latency", ["route"])
LIVE_SESSIONS = Gauge("samvad_live_voice_sessions", "open WebSocket voice sessions on this replica")
RATE_LIMITED = Counter("samvad_rate_limited_total", "requests refused by a rate limit", ["scope"])
RATE_LIMIT_DEGRADED = Counter("samvad_rate_limit_degraded_total", "rate-limit checks decided by the failure policy (Redis down)", ["policy"])
GUARDRAILS = Counter("samvad_guardrail_actions_total", "guardrail findings by check and action", ["check", "action"])


def count_turn(done) -> None:
    """Count a finished turn (a TurnDoneEvent): its outcome and its guardrail findings. Flags
    carry check names and kinds only, never the text that triggered them."""
    TURNS.labels(done.outcome).inc()
    for flag in done.response.guardrail_flags:
        GUARDRAILS.labels(flag.check, flag.action).inc()
