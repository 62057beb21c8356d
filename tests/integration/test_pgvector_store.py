"""The pgvector store (rag_index/stores/pgvector.py) in the embedded PostgreSQL, which ships the
extension: a version loaded from the index folder answers the project's QA set as the FAISS
index does, an update sends only the changed documents, publish moves the live pointer, and a
live version cannot be dropped."""

import shutil

import pytest
import yaml

from rag_index.build import build_index
from rag_index.retriever import Retriever
from rag_index.stores.base import faiss_hits
from rag_index.stores.pgvector import PgVectorStore
from samvad.embeddings import get_embedder
from samvad.settings import REPO_ROOT
from samvad.storage import embedded

pytestmark = [pytest.mark.integration, pytest.mark.models]  # builds the index with the e5 embedder
CORPUS = REPO_ROOT / "data" / "sample_corpus"
QUESTIONS = [
    item["question"]
    for name in ("qa_sample.yaml", "qa_followups.yaml")
    for item in yaml.safe_load((REPO_ROOT / "data" / name).read_text(encoding="utf-8"))
]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pgvector")
    dsn = embedded.start_postgres(folder)
    yield dsn
    embedded.stop_postgres(folder)


@pytest.fixture(scope="module")
def built(tmp_path_factory, settings):
    embedder = get_embedder(settings.embeddings)
    out = tmp_path_factory.mktemp("idx") / "v1"
    build_index(CORPUS, out, embedder, chunk_chars=settings.rag.chunk_chars, overlap_chars=settings.rag.overlap_chars)
    return out, embedder


async def test_pgvector_answers_the_qa_set_as_faiss_does(postgres, built):
    folder, embedder = built
    retriever = Retriever(folder, embedder)
    store = await PgVectorStore.connect(postgres)
    try:
        info = await store.load(folder, "v1")
        assert (info.chunks, info.sent, info.embedder) == (retriever.manifest.chunks,) * 2 + (embedder.model_name,)
        assert await store.publish("v1") is None and await store.live() == "v1"
        same = 0
        for question in QUESTIONS:
            vector = retriever.query_vectors([question])[0]
            exact = faiss_hits(retriever._index, retriever._chunks, vector, 5)
            hits = await store.query("v1", vector, 5)
            same += [h.chunk_id for h in hits] == [h.chunk_id for h in exact]
            assert abs(hits[0].score - exact[0].score) < 1e-4 and hits[0].text == exact[0].text
        assert same >= 0.95 * len(QUESTIONS), f"same top-5 on {same} of {len(QUESTIONS)} questions"
    finally:
        await store.close()


async def test_an_update_sends_only_changed_documents_and_publish_switches(postgres, built, tmp_path):
    folder, embedder = built
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    changed = next(p for p in sorted(corpus.rglob("*.md")))
    changed.write_text(changed.read_text(encoding="utf-8") + "\n\nOur mascot is a blue elephant named Gajju.\n")
    v2 = tmp_path / "v2"
    build_index(corpus, v2, embedder, chunk_chars=700, overlap_chars=120, previous=folder)
    store = await PgVectorStore.connect(postgres)
    try:
        await store.load(folder, "v1")
        await store.publish("v1")
        info = await store.load(v2, "v2", previous="v1")
        doc = changed.relative_to(corpus).as_posix()
        changed_chunks = sum(1 for line in (v2 / "chunks.jsonl").read_text().splitlines() if f'"{doc}"' in line)
        assert 0 < info.sent == changed_chunks < info.chunks  # only the edited document was sent
        retriever = Retriever(v2, embedder)
        vector = retriever.query_vectors(["what is the name of the bank's elephant mascot"])[0]
        assert "Gajju" in (await store.query("v2", vector, 1))[0].text
        assert await store.publish("v2") == "v1" and await store.live() == "v2"
        with pytest.raises(ValueError, match="live"):
            await store.drop("v2")
        await store.drop("v1")
        with pytest.raises(LookupError):
            await store.describe("v1")
        assert await store.delete_documents("v2", [doc]) == changed_chunks
    finally:
        await store.close()


async def test_the_retrieval_stage_serves_the_live_pgvector_version_and_fails_fast_without_it(
    tmp_path_factory, built, settings
):
    """What the Retriever deployment runs with `rag.store: pgvector`: the live version's
    passages (the same as the folder's), a newly published version taken without a restart,
    and a database that is gone failing the search with a clear stage error, not a hang."""
    from rag_index.stage import RetrievalStage
    from samvad.errors import ProviderError

    folder, embedder = built
    data = tmp_path_factory.mktemp("pgvector-stage")
    dsn = embedded.start_postgres(data)
    try:
        store = await PgVectorStore.connect(dsn)
        s = settings.model_copy(
            update={
                "database_url": dsn,
                "rag": settings.rag.model_copy(update={"store": "pgvector", "index_dir": folder}),
            }
        )
        stage = RetrievalStage(s)
        with pytest.raises(ProviderError) as refused:  # nothing published yet
            await stage.lookup("how do I block my card", True, 4)
        assert refused.value.code == "retrieval_unavailable" and "publish" in refused.value.message
        await store.load(folder, "v1")
        await store.publish("v1")
        score, passages = await stage.lookup("how do I block my card", True, 4)
        faiss_score, faiss_passages = Retriever(folder, embedder).lookup("how do I block my card", stage._library, 4)
        assert [p.chunk_id for p in passages] == [p.chunk_id for p in faiss_passages]
        assert score == pytest.approx(faiss_score) and stage.status()["version"] == "v1"
        corpus = data / "corpus"
        shutil.copytree(CORPUS, corpus)
        (corpus / "mascot.md").write_text("# Mascot\n\nOur mascot is a blue elephant named Gajju.\n")
        build_index(corpus, data / "v2", embedder, chunk_chars=700, overlap_chars=120, previous=folder)
        await store.load(data / "v2", "v2", previous="v1")
        await store.publish("v2")
        assert (await stage.reload_now())["version"] == "v2"
        _, passages = await stage.lookup("what is the bank's elephant mascot called", False, 1)
        assert "Gajju" in passages[0].text
        await store.close()
        embedded.stop_postgres(data)
        with pytest.raises(ProviderError) as down:
            await stage.lookup("how do I block my card", True, 4)
        assert down.value.code == "retrieval_unavailable" and down.value.stage == "retrieval"
    finally:
        embedded.stop_postgres(data)


def test_the_cli_publishes_to_pgvector_and_evaluates_it_beside_faiss(postgres, built, tmp_path):
    import os
    import subprocess
    import sys

    folder, _ = built
    env = os.environ | {
        "SAMVAD_DATABASE_URL": postgres,
        "SAMVAD_REDIS_URL": "redis://127.0.0.1:1/0",  # not used by these commands
        "SAMVAD_DATA_DIR": str(tmp_path),
    }

    def samvad(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "samvad", "index", *args], capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    out = samvad("publish", str(folder), "--store", "pgvector")
    assert "pgvector: v1 is live" in out, out
    report = samvad("eval", str(folder), str(REPO_ROOT / "data" / "qa_sample.yaml"), "--store", "pgvector")
    recall = next(
        line for line in report.splitlines() if "recall@k " in line and "│" in line and "hinglish" not in line
    )
    cells = [c.strip() for c in recall.split("│") if c.strip()]
    assert cells[0] == "recall@k" and float(cells[1]) > 0.8 and abs(float(cells[3])) <= 0.05, report
    assert "search ms p50" in report
