from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from deployments.serve_config import export_node_env
from samvad.settings import Settings, load_settings

DATA = Path(__file__).parent / "data"
pytest_plugins = ["tests.graph"]  # the real-graph fixtures, for tests/e2e and tests/security

# Secrets have no defaults (samvad.settings.secret): the test run makes its own, before any
# settings are loaded, and every process it starts inherits them.
for _name in ("KEY", "RESUME", "PHONE"):
    os.environ.setdefault(f"SAMVAD_SERVICE__{_name}_SECRET", secrets.token_urlsafe(32))
# serve_config.yaml's Serve settings, in the environment before any test module imports Ray (Serve
# reads them at import, and the graph's handles are built in this process): as `samvad run` does.
export_node_env(str(Path(__file__).parents[1] / "serve_config.yaml"))


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("samvad")


@pytest.fixture(scope="session")
def settings(tmp_root) -> Settings:
    s = load_settings()
    return s.model_copy(
        update={"rag": s.rag.model_copy(update={"index_dir": tmp_root / "index"}), "data_dir": tmp_root / "var"}
    )


@pytest.fixture(scope="session")
def runner(settings):
    from rag_index.pipeline import local_runner

    return local_runner(settings)


@pytest.fixture(scope="session")
def tts(runner):
    return runner.engines.tts


# Fixtures that load the offline models (Whisper, the e5 embedder, the index): a test using one is
# marked `models`, so `pytest -m "unit and not models"` is the tier that runs in seconds.
MODEL_FIXTURES = {"runner", "tts"}


def pytest_collection_modifyitems(items) -> None:
    """Tests that start their own Ray (in another process) run first, before the suite's shared
    graph starts one in this process: two Ray instances at once would fight over the 2 cores."""
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.models)
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is None)  # stable: order kept otherwise
