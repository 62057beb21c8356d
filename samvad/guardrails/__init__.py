"""Guardrails: input checks (PII, prompt injection, abuse, human-agent requests) and per-sentence
output checks (PII leak, blocked topics, grounding), run in order from a YAML policy."""
