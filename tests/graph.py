"""The real graph (Ray Serve, two ingress and two Sessions replicas) with real PostgreSQL and
Redis, shared by tests/e2e and tests/security for the whole session (a pytest plugin: see
tests/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from deployments.haproxy import ingress_env

# The graph runs behind Serve's HAProxy ingress, as `samvad run` does (deployments/haproxy.py), on
# ports of its own; SAMVAD_TEST_INGRESS=proxy runs it behind Serve's Python proxy instead. In the
# environment before any test module imports Ray: Serve reads it at import.
INGRESS_ENV = ingress_env(os.environ.get("SAMVAD_TEST_INGRESS", "haproxy"), isolated=True)
os.environ.update(INGRESS_ENV)

import httpx
import pytest

from samvad.settings import REPO_ROOT, secret
from samvad.storage import embedded
from samvad.storage.repository import Repository
from testkit import aio, ray_local

PORT = 8765
INGRESS_REPLICAS = 2
SESSIONS_REPLICAS = 2
IDLE_SECONDS = 4  # conversations are passivated after this much idle time (short, so a test can watch it)
LEASE_TTL_S = 3  # a dead Sessions replica's conversations are taken over after this
BODY_READ_S = 8  # service.body_read_s: short, so a test can watch a slow body refused
ADMIN_KEY = "adm-" + os.urandom(16).hex()  # the operations routes (/metrics, /docs) need it
ALLOWED_ORIGIN = "https://app.example.com"  # service.cors_origins: another site allowed to call the API


class Servers:
    """PostgreSQL and Redis owned by the e2e session (embedded, in a temp folder), so the fault
    tests may stop and restart them. The machine's servers are exercised by URL in the
    integration tests."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.dsn = embedded.start_postgres(folder)
        self.redis_url = embedded.start_redis(folder)

    def stop_postgres(self) -> None:
        embedded.stop_postgres(self.folder)

    def start_postgres(self) -> None:
        assert embedded.start_postgres(self.folder) == self.dsn

    def stop_redis(self) -> None:
        embedded.stop_redis(self.folder)

    def start_redis(self) -> None:
        assert embedded.start_redis(self.folder) == self.redis_url

    def close(self) -> None:
        embedded.stop_redis(self.folder)
        embedded.stop_postgres(self.folder)


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    s = Servers(tmp_path_factory.mktemp("servers"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def serve_app(servers, tmp_path_factory):
    import ray
    from ray import serve

    from deployments.app import build_app
    from deployments.serve_config import deployment_options, export_node_env

    os.environ["SAMVAD_RAG__INDEX_DIR"] = str(tmp_path_factory.mktemp("e2e") / "index")
    os.environ["SAMVAD_SESSIONS__IDLE_SECONDS"] = str(IDLE_SECONDS)
    os.environ["SAMVAD_SESSIONS__LEASE_TTL_S"] = str(LEASE_TTL_S)
    # Every test request comes from 127.0.0.1: the per-IP bucket is raised so that the fuzzing
    # and load tests measure the per-key limits (the IP bucket is the same script, tested apart).
    os.environ["SAMVAD_LIMITS__IP_REQUESTS_PER_MINUTE"] = "1000000"
    # The test client is also a trusted proxy: tests/security speaks for other client addresses
    # with X-Forwarded-For (requests without it are 127.0.0.1, as before).
    os.environ["SAMVAD_SERVICE__TRUSTED_PROXIES"] = '["127.0.0.1"]'
    os.environ["SAMVAD_SERVICE__ADMIN_KEY"] = ADMIN_KEY
    os.environ["SAMVAD_SERVICE__BODY_READ_S"] = str(BODY_READ_S)
    os.environ["SAMVAD_SERVICE__CORS_ORIGINS"] = f'["{ALLOWED_ORIGIN}"]'
    ray_local.start(
        export_node_env(str(REPO_ROOT / "serve_config.yaml")) | INGRESS_ENV | {"RAY_AUTH_MODE": "disabled"},
        _system_config={"metrics_report_interval_ms": 1000},  # metrics reach the agent within a second
    )
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    options = deployment_options(str(REPO_ROOT / "serve_config.yaml"))
    # Two live ingress replicas, as on a scaled cluster: limits and sessions must hold across them.
    options["Ingress"] = {k: v for k, v in options["Ingress"].items() if k != "autoscaling_config"} | {
        "num_replicas": INGRESS_REPLICAS
    }
    options["Sessions"] = {k: v for k, v in options["Sessions"].items() if k != "autoscaling_config"} | {
        "num_replicas": SESSIONS_REPLICAS
    }
    serve.run(
        build_app({"database_url": servers.dsn, "redis_url": servers.redis_url, "deployment_options": options}),
        name="samvad",
        route_prefix="/",
    )
    yield servers.dsn
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def api_key(serve_app) -> str:
    async def make():
        from samvad.settings import load_settings

        repo = await Repository.connect(serve_app, secret(load_settings().service, "key"), max_size=1)
        try:
            # The suite opens hundreds of conversations with this key: its session limits are its own.
            return (await repo.create_key("e2e", max_open_sessions=1_000_000, sessions_per_minute=1_000_000))[1]
        finally:
            await repo.close()

    return aio.run(make)


@pytest.fixture()
def client(api_key):
    with httpx.Client(
        base_url=f"http://127.0.0.1:{PORT}", headers={"X-API-Key": api_key, "X-Admin-Key": ADMIN_KEY}, timeout=120
    ) as c:
        yield c


@pytest.fixture()
def db(serve_app):
    """Run one query against the service's database."""
    import asyncpg

    def query(sql: str, *args):
        async def run():
            conn = await asyncpg.connect(serve_app)
            try:
                return await conn.fetch(sql, *args)
            finally:
                await conn.close()

        return aio.run(run)

    return query
