"""serve_config.yaml read without Ray: the per-deployment options and the Serve settings for
the starters that run Serve in-process (`samvad run`, tests, benchmarks)."""

from __future__ import annotations

import os


def _application(serve_config: str) -> dict:
    import yaml

    with open(serve_config, encoding="utf-8") as f:
        return yaml.safe_load(f)["applications"][0]


def deployment_options(serve_config: str) -> dict[str, dict]:
    """The per-deployment options of the first application in a serve_config.yaml."""
    app = _application(serve_config)
    return {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])}


def replica_env(serve_config: str) -> dict[str, str]:
    """The application's `runtime_env.env_vars`: what `serve deploy` gives every replica, for
    the starters that run Serve in-process (`samvad run`, tests, benchmarks) to give too."""
    return {k: str(v) for k, v in _application(serve_config).get("runtime_env", {}).get("env_vars", {}).items()}


# Replica-only: in the starter's own process it would stop Serve handles from being used from
# synchronous code (tests and benchmarks call deployments through them).
_REPLICA_ONLY = frozenset({"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"})


def export_node_env(serve_config: str) -> dict[str, str]:
    """`replica_env`, also put in this process's environment (where not already set, and but for
    the replica-only settings). A starter calls it before it imports Ray: the handles the
    deployments call each other with are built here by `serve.run`, and take their transport
    (gRPC or Ray tasks) from the Serve settings this process imported; the proxy and the
    controller never see the app's runtime_env either, only the node's environment. With the
    settings only in the runtime_env, one stub REST turn on 2 cores (bench/overhead.py) took
    ~39 ms at one caller and did 45 turns/s at 16; exported, ~30 ms and ~70 turns/s. On a
    cluster the same variables go in the environment of `ray start` (deploy/kuberay does)."""
    env = replica_env(serve_config)
    for name, value in env.items():
        if name not in _REPLICA_ONLY:
            os.environ.setdefault(name, value)
    return env
