"""Persistence: PostgreSQL (sessions, messages, provider calls, API keys), Redis (caches),
and the embedded servers used when no URL is configured."""
