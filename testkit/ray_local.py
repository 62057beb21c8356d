"""One Ray on this machine for a test or benchmark graph, started the same way everywhere."""

from __future__ import annotations

from typing import Any

from samvad.settings import REPO_ROOT


def start(env_vars: dict[str, str], **options: Any) -> None:
    """Ray with the box's 2 CPUs, no dashboard, Samvad's namespace and its workers' logs kept out
    of this process's output; `env_vars` (Serve's settings, the ingress mode) reach every worker,
    with the checkout on PYTHONPATH. Import this before Ray only once the environment is set:
    Serve reads its settings when it is imported."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        namespace="samvad",
        log_to_driver=False,
        runtime_env={"env_vars": env_vars | {"PYTHONPATH": str(REPO_ROOT)}},
        **options,
    )
