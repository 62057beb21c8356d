"""The application builder: `serve run deployments.app:build_app config=configs/default.yaml`,
or serve_config.yaml's `import_path: deployments.app:build_app` with `args`."""

from __future__ import annotations

from pydantic import BaseModel
from ray.serve import Application

from deployments.ingress import Ingress
from deployments.sessions import Sessions
from deployments.stages import ASR, LLM, TTS, Retriever, Translation
from samvad.settings import load_settings, secret

SESSION_ROUTER = "actors.router:SessionRouter"


class AppArgs(BaseModel):
    config: str | None = None  # YAML config path; SAMVAD_* environment variables override it
    database_url: str | None = None
    redis_url: str | None = None
    cache_redis_url: str | None = None
    # Per-deployment options (the `deployments` list of serve_config.yaml), for `samvad run` and
    # tests, which start Serve in-process; `serve deploy` applies the YAML's options itself.
    deployment_options: dict[str, dict] = {}


def build_app(args: dict) -> Application:
    a = AppArgs.model_validate(args)
    urls = {"database_url": a.database_url, "redis_url": a.redis_url, "cache_redis_url": a.cache_redis_url}
    overrides = {k: v for k, v in urls.items() if v}
    # Python mode, not JSON: JSON masks SecretStr values, and the replicas need the real keys.
    loaded = load_settings(a.config, **overrides)
    for which in ("key", "resume", "phone"):  # refuse to deploy without real secrets (ConfigError says what to set)
        secret(loaded.service, which)
    settings = loaded.model_dump()

    def options(deployment) -> dict:
        return a.deployment_options.get(deployment.name, {})

    def node(deployment):
        return deployment.options(**options(deployment)).bind(settings)

    asr, tts = node(ASR), node(TTS)
    # Every call for a conversation goes to the replica hosting it (rendezvous hashing).
    # serve.deployment/serve.ingress are typed as returning the class; they return a Deployment.
    sessions = Sessions.options(  # type: ignore[attr-defined]
        **({"request_router_config": {"request_router_class": SESSION_ROUTER}} | options(Sessions))
    ).bind(settings, asr, node(LLM), node(Retriever), node(Translation), tts)
    return Ingress.options(**options(Ingress)).bind(settings, asr, tts, sessions)  # type: ignore[attr-defined]
