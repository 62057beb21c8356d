"""Cost estimates for provider calls from the price table in config."""

from __future__ import annotations

from samvad.contracts import ProviderCall
from samvad.settings import PriceEntry


def price(call: ProviderCall, pricing: dict[str, dict[str, PriceEntry]]) -> ProviderCall:
    """Return `call` with `cost`/`currency` filled from `pricing[provider][model or "*"]`."""
    table = pricing.get(call.provider, {})
    entry = table.get(call.model) or table.get("*")
    if entry is None:
        return call.model_copy(update={"cost": 0.0, "currency": "unpriced"})
    u = call.usage
    cost = (
        u.audio_seconds * entry.per_audio_second
        + u.characters * entry.per_character
        + (u.input_tokens - u.cached_tokens) * entry.per_input_token
        + u.cached_tokens * entry.per_cached_token
        + u.output_tokens * entry.per_output_token
    )
    return call.model_copy(update={"cost": round(cost, 6), "currency": entry.currency})


def totals(calls: list[ProviderCall]) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in calls:
        out[c.currency] = round(out.get(c.currency, 0.0) + c.cost, 6)
    return out
