"""Publishing a new index version to the running graph: no failed or empty request during the
swap, and answers switch to the new content."""

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from rag_index.build import build_index, publish
from samvad.embeddings import get_embedder
from samvad.settings import REPO_ROOT, load_settings

pytestmark = pytest.mark.e2e


def test_hot_swap_under_load(client, tmp_path):
    live = Path(os.environ["SAMVAD_RAG__INDEX_DIR"])
    corpus = tmp_path / "corpus"
    shutil.copytree(REPO_ROOT / "data" / "sample_corpus", corpus)
    (corpus / "cards" / "moon-card.md").write_text(
        "# The Navtara Moon card\n\n## Annual fee\nThe Navtara Moon card has no annual fee and earns lunar reward points.\n"
    )
    new = tmp_path / "v-moon"
    build_index(
        corpus, new, get_embedder(load_settings().embeddings), chunk_chars=700, overlap_chars=120, previous=live
    )
    results, stop = [], threading.Event()
    sid = client.post("/api/v1/sessions", json={}).json()["id"]

    def load():
        while not stop.is_set():
            r = client.post(
                "/api/v1/turn",
                json={"session_id": sid, "text": "What is the annual fee of the Moon card?", "speak": False},
            )
            ok = r.status_code == 200 and bool(r.json()["response"]["response_text"])
            results.append((time.monotonic(), ok, ok and "lunar" in r.json()["response"]["response_text"]))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(2)
        published_at = time.monotonic()
        publish(new, live)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(t > published_at and moon for t, _, moon in results[-3:]):
            time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert results and all(ok for _, ok, _ in results), [r for r in results if not r[1]]
    assert not any(moon for t, _, moon in results if t < published_at)
    assert any(moon for t, _, moon in results if t > published_at), "answers never switched to the new version"
    print(f"{len(results)} requests during the swap, all answered")
