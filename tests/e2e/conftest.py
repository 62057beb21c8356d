"""Ray Serve with the real graph, real PostgreSQL and Redis, for the whole e2e session."""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx
import pytest

from samvad.settings import REPO_ROOT
from samvad.storage.repository import Repository
from tests import aio
from tests.servers import postgres, redis_url

PORT = 8765
IDLE_SECONDS = 4  # session actors exit after this much idle time (short, so a test can watch it)


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("servers")
    with postgres(tmp) as dsn, redis_url(tmp) as rurl:
        import redis

        redis.Redis.from_url(rurl).flushdb()
        yield dsn, rurl


@pytest.fixture(scope="session")
def serve_app(servers, tmp_path_factory):
    import ray
    from ray import serve

    from deployments.app import build_app, deployment_options

    dsn, rurl = servers
    os.environ["SAMVAD_RAG__INDEX_DIR"] = str(tmp_path_factory.mktemp("e2e") / "index")
    os.environ["SAMVAD_SERVICE__SESSION_IDLE_SECONDS"] = str(IDLE_SECONDS)
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, namespace="samvad", log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(
        build_app({"database_url": dsn, "redis_url": rurl, "deployment_options": deployment_options(str(REPO_ROOT / "serve_config.yaml"))}),
        name="samvad", route_prefix="/",
    )
    yield dsn
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def api_key(serve_app) -> str:
    async def make():
        from samvad.settings import load_settings

        repo = await Repository.connect(serve_app, load_settings().service.key_secret, max_size=1)
        try:
            return (await repo.create_key("e2e"))[1]
        finally:
            await repo.close()

    return aio.run(make)


@pytest.fixture()
def client(api_key):
    with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", headers={"X-API-Key": api_key}, timeout=120) as c:
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
