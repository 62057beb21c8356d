"""The shared vector stores behind the retriever (rag_index/stores/), each against the real thing
or a fake that follows its published API: pgvector in the embedded PostgreSQL (which ships the
extension), Pinecone and Weaviate against testkit/vector_server.py. For each: a version loaded
from the index folder answers the project's QA set as the FAISS index does, an update sends only
the changed documents, publish moves the live pointer, a live version cannot be dropped, and the
retrieval stage serves the live version, takes a new one without a restart and fails fast
(`retrieval_unavailable`) when the store is down."""

import shutil
from contextlib import asynccontextmanager

import pytest
import yaml
from pydantic import SecretStr

from rag_index.build import build_index
from rag_index.retriever import Retriever
from rag_index.stores.base import faiss_hits
from rag_index.stores.pgvector import PgVectorStore
from rag_index.stores.pinecone import PineconeStore
from rag_index.stores.weaviate import WeaviateStore
from samvad.embeddings import get_embedder
from samvad.providers.pinecone.config import PineconeSettings
from samvad.providers.weaviate.config import WeaviateSettings
from samvad.settings import REPO_ROOT
from samvad.storage import embedded
from testkit.serving import Served
from testkit.vector_server import PINECONE_KEY, WEAVIATE_KEY, pinecone_app, weaviate_app

pytestmark = [pytest.mark.integration, pytest.mark.models]  # builds the index with the e5 embedder
CORPUS = REPO_ROOT / "data" / "sample_corpus"
QUESTIONS = [
    item["question"]
    for name in ("qa_sample.yaml", "qa_followups.yaml")
    for item in yaml.safe_load((REPO_ROOT / "data" / name).read_text(encoding="utf-8"))
]
STORES = ["pgvector", "pinecone", "weaviate"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, settings):
    embedder = get_embedder(settings.embeddings)
    out = tmp_path_factory.mktemp("idx") / "v1"
    build_index(CORPUS, out, embedder, chunk_chars=settings.rag.chunk_chars, overlap_chars=settings.rag.overlap_chars)
    return out, embedder


class Backend:
    """One store's server for a test: where it is, how to reach it, how to take it down."""

    def __init__(self, name, postgres_dsn=None, served=None, state=None):
        self.name, self.dsn, self.served, self.state = name, postgres_dsn, served, state

    def pinecone(self):
        return PineconeSettings(base_url=self.served.url, api_key=SecretStr(PINECONE_KEY), max_retries=0)

    def weaviate(self):
        return WeaviateSettings(base_url=self.served.url, api_key=SecretStr(WEAVIATE_KEY), max_retries=0)

    async def connect(self, knowledge_base=None):
        if self.name == "pgvector":
            return await PgVectorStore.connect(self.dsn, knowledge_base=knowledge_base)
        if self.name == "pinecone":
            return await PineconeStore.connect(self.pinecone(), knowledge_base)
        return await WeaviateStore.connect(self.weaviate(), knowledge_base)

    def configure(self, settings, index_dir):
        """The service's settings with this store as `rag.store`."""
        rag = {"store": self.name, "index_dir": index_dir, "knowledge_bases": ["mascots"]}
        update = {"rag": settings.rag.model_copy(update=rag)}
        if self.name == "pgvector":
            update["database_url"] = self.dsn
        else:
            providers = settings.providers.model_copy(update={self.name: getattr(self, self.name)()})
            update["providers"] = providers
        return settings.model_copy(update=update)

    def down(self):
        if self.name == "pgvector":
            embedded.stop_postgres(self.folder)
        else:
            self.state.down = True


@pytest.fixture(params=STORES)
def backend(request, tmp_path):
    name = request.param
    if name == "pgvector":
        folder = tmp_path / "pg"
        b = Backend(name, embedded.start_postgres(folder))
        b.folder = folder
        yield b
        embedded.stop_postgres(folder)
        return
    app, state = pinecone_app(384) if name == "pinecone" else weaviate_app()
    served = Served(app).start()
    yield Backend(name, served=served, state=state)
    served.stop()


@asynccontextmanager
async def connected(backend, knowledge_base=None):
    store = await backend.connect(knowledge_base)
    try:
        yield store
    finally:
        await store.close()


async def test_a_store_answers_the_qa_set_as_faiss_does(backend, built):
    folder, embedder = built
    retriever = Retriever(folder, embedder)
    async with connected(backend) as store:
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
        assert same >= 0.95 * len(QUESTIONS), f"{backend.name}: same top-5 on {same} of {len(QUESTIONS)} questions"


async def test_an_update_sends_only_changed_documents_and_publish_switches(backend, built, tmp_path):
    folder, embedder = built
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    changed = next(p for p in sorted(corpus.rglob("*.md")))
    changed.write_text(changed.read_text(encoding="utf-8") + "\n\nOur mascot is a blue elephant named Gajju.\n")
    v2 = tmp_path / "v2"
    build_index(corpus, v2, embedder, chunk_chars=700, overlap_chars=120, previous=folder)
    async with connected(backend) as store:
        await store.load(folder, "v1")
        await store.publish("v1")
        info = await store.load(v2, "v2", previous="v1")
        doc = changed.relative_to(corpus).as_posix()
        changed_chunks = sum(1 for line in (v2 / "chunks.jsonl").read_text().splitlines() if f'"{doc}"' in line)
        assert 0 < info.sent == changed_chunks < info.chunks  # only the edited document was sent
        assert info.copied == info.chunks - info.sent
        retriever = Retriever(v2, embedder)
        vector = retriever.query_vectors(["what is the name of the bank's elephant mascot"])[0]
        assert "Gajju" in (await store.query("v2", vector, 1))[0].text
        assert await store.publish("v2") == "v1" and await store.live() == "v2"
        with pytest.raises(ValueError, match="live"):
            await store.drop("v2")
        async with connected(backend, "mascots") as kb:  # v1 still live for another knowledge base
            await kb.publish("v1")
            with pytest.raises(ValueError, match="live"):
                await store.drop("v1")
            await kb.publish("v2")
        await store.drop("v1")
        with pytest.raises(LookupError):
            await store.describe("v1")
        await store.delete_documents("v2", [doc])
        assert all(h.source != doc for h in await store.query("v2", vector, 20))


async def test_the_retrieval_stage_serves_the_live_version_and_fails_fast_without_it(
    backend, tmp_path, built, settings
):
    """What the Retriever deployment runs with a shared `rag.store`: the live version's passages
    (the same as the folder's), a newly published version taken without a restart, and a store
    that is gone failing the search with a clear stage error, not a hang, then failing at once
    while its circuit is open."""
    from rag_index.stage import RetrievalStage
    from samvad.errors import ProviderError

    folder, embedder = built
    stage = RetrievalStage(backend.configure(settings, folder))
    with pytest.raises(ProviderError) as refused:  # nothing published yet
        await stage.lookup("how do I block my card", True, 4)
    assert refused.value.code == "retrieval_unavailable" and "publish" in refused.value.message
    async with connected(backend) as store:
        await store.load(folder, "v1")
        await store.publish("v1")
        assert (await stage.reload_now())["version"] == "v1"
        score, passages = await stage.lookup("how do I block my card", True, 4)
        faiss_score, faiss_passages = Retriever(folder, embedder).lookup("how do I block my card", stage._library, 4)
        assert [p.chunk_id for p in passages] == [p.chunk_id for p in faiss_passages]
        assert score == pytest.approx(faiss_score)
        corpus = tmp_path / "corpus"
        shutil.copytree(CORPUS, corpus)
        (corpus / "mascot.md").write_text("# Mascot\n\nOur mascot is a blue elephant named Gajju.\n")
        build_index(corpus, tmp_path / "v2", embedder, chunk_chars=700, overlap_chars=120, previous=folder)
        info = await store.load(tmp_path / "v2", "v2", previous="v1")
        assert info.sent == 1  # the new document's one chunk
        mascot = "what is the bank's elephant mascot called"
        async with connected(backend, "mascots") as kb:  # live for one knowledge base only
            assert await kb.publish("v2") is None and await kb.live() == "v2" and await store.live() == "v1"
        status = await stage.reload_now()
        assert status["version"] == "v1" and status["knowledge_bases"]["mascots"]["version"] == "v2"
        assert "Gajju" in (await stage.lookup(mascot, False, 1, knowledge_base="mascots"))[1][0].text
        assert "Gajju" not in (await stage.lookup(mascot, False, 1))[1][0].text
        await store.publish("v2")
    assert (await stage.reload_now())["version"] == "v2"
    _, passages = await stage.lookup(mascot, False, 1)
    assert "Gajju" in passages[0].text
    backend.down()
    for _ in range(settings.providers.breaker_failures):
        with pytest.raises(ProviderError) as down:
            await stage.lookup("how do I block my card", True, 4)
        assert down.value.code == "retrieval_unavailable" and down.value.stage == "retrieval"
        assert "unreachable" in down.value.message
    with pytest.raises(ProviderError) as open_circuit:  # no longer waited on
        await stage.lookup("how do I block my card", True, 4)
    assert "circuit open" in open_circuit.value.message


def test_the_cli_publishes_to_a_store_and_evaluates_it_beside_faiss(backend, built, tmp_path):
    import os
    import subprocess
    import sys

    folder, _ = built
    env = os.environ | {
        "SAMVAD_REDIS_URL": "redis://127.0.0.1:1/0",  # not used by these commands
        "SAMVAD_DATA_DIR": str(tmp_path),
    }
    if backend.name == "pgvector":
        env["SAMVAD_DATABASE_URL"] = backend.dsn
    else:  # configured the way an operator would: the endpoint and the key by environment
        section = backend.name.upper()
        env[f"SAMVAD_PROVIDERS__{section}__BASE_URL"] = backend.served.url
        env[f"SAMVAD_{section}_API_KEY"] = PINECONE_KEY if backend.name == "pinecone" else WEAVIATE_KEY

    def samvad(*args: str, ok: bool = True) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "samvad", "index", *args], capture_output=True, text=True, env=env, timeout=300
        )
        assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return done.stdout

    out = samvad("publish", str(folder), "--store", backend.name)
    assert f"{backend.name}: v1 is live" in out, out
    report = samvad("eval", str(folder), str(REPO_ROOT / "data" / "qa_sample.yaml"), "--store", backend.name)
    recall = next(
        line for line in report.splitlines() if "recall@k " in line and "│" in line and "hinglish" not in line
    )
    cells = [c.strip() for c in recall.split("│") if c.strip()]
    assert cells[0] == "recall@k" and float(cells[1]) > 0.8 and abs(float(cells[3])) <= 0.05, report
    assert "search ms p50" in report
    if backend.name != "pgvector":
        backend.down()
        refused = samvad("publish", str(folder), "--store", backend.name, ok=False)
        assert f"{backend.name}:" in refused and "Traceback" not in refused  # a clear line, not a trace
