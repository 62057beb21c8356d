"""Samvad's metrics as `ray.util.metrics` objects, so that Ray's metrics agent exports them
from every process (see `samvad.metrics`). Imported for its effect by the modules Ray loads in
its workers (the session actor, the deployments)."""

from __future__ import annotations

from typing import Any

from ray.util import metrics as ray_metrics

from samvad import metrics


def _make(kind: str, name: str, description: str, tags: tuple[str, ...], bounds: list[float] | None) -> Any:
    if kind == "counter":
        return ray_metrics.Counter(name, description, tag_keys=tags)
    if kind == "gauge":
        return ray_metrics.Gauge(name, description, tag_keys=tags)
    return ray_metrics.Histogram(name, description, boundaries=bounds or [], tag_keys=tags)


def install() -> None:
    metrics.use(_make)
