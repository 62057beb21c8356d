"""The application builder: `serve run deployments.app:build_app config=configs/default.yaml`,
or serve_config.yaml's `import_path: deployments.app:build_app` with `args`."""

from __future__ import annotations

from pydantic import BaseModel
from ray.serve import Application

from deployments.ingress import Ingress
from deployments.stages import ASR, LLM, TTS, Retriever, Store, Translation
from samvad.settings import load_settings


class AppArgs(BaseModel):
    config: str | None = None  # YAML config path; SAMVAD_* environment variables override it
    database_url: str | None = None
    redis_url: str | None = None
    # Per-deployment options (the `deployments` list of serve_config.yaml), for `samvad run` and
    # tests, which start Serve in-process; `serve deploy` applies the YAML's options itself.
    deployment_options: dict[str, dict] = {}


def build_app(args: dict) -> Application:
    a = AppArgs.model_validate(args)
    overrides = {k: v for k, v in {"database_url": a.database_url, "redis_url": a.redis_url}.items() if v}
    # Python mode, not JSON: JSON masks SecretStr values, and the replicas need the real keys.
    settings = load_settings(a.config, **overrides).model_dump()

    def node(deployment):
        return deployment.options(**a.deployment_options.get(deployment.name, {})).bind(settings)

    return Ingress.options(**a.deployment_options.get("Ingress", {})).bind(
        settings, node(ASR), node(LLM), node(Retriever), node(Translation), node(TTS), node(Store)
    )


def deployment_options(serve_config: str) -> dict[str, dict]:
    """The per-deployment options of the first application in a serve_config.yaml."""
    import yaml

    with open(serve_config, encoding="utf-8") as f:
        app = yaml.safe_load(f)["applications"][0]
    return {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])}
