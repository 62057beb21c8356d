"""The Pinecone and Weaviate fakes hold to the vendors' published APIs (the official `pinecone`
SDK runs against the Pinecone fake), and Samvad's adapters stay within those APIs' limits at a
size that needs several requests per step: batched upserts under the record and byte caps,
paginated reads when an update copies unchanged documents, Pinecone's eventual consistency
waited out before a version can go live, and refusals surfaced as clear errors."""

import json

import numpy as np
import pytest
from pydantic import SecretStr

from rag_index.stores.base import StoreDown
from rag_index.stores.pinecone import PineconeStore
from rag_index.stores.weaviate import WeaviateStore
from samvad.providers.pinecone.config import PineconeSettings
from samvad.providers.weaviate.config import WeaviateSettings
from testkit.index_folder import synthetic_version
from testkit.serving import Served
from testkit.vector_server import PINECONE_KEY, WEAVIATE_KEY, pinecone_app, weaviate_app

pytestmark = pytest.mark.integration
DIM = 16
SIZE = 2500  # chunks: more than one page of every read and one batch of every write


@pytest.fixture
def pinecone():
    app, state = pinecone_app(DIM)
    served = Served(app).start()
    yield served, state
    served.stop()


@pytest.fixture
def weaviate():
    app, state = weaviate_app()
    served = Served(app).start()
    yield served, state
    served.stop()


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """v1, and v2 with one document (100 chunks) changed."""
    root = tmp_path_factory.mktemp("synthetic")
    synthetic_version(root / "v1", SIZE, DIM)
    synthetic_version(root / "v2", SIZE, DIM)
    chunks = (root / "v2" / "chunks.jsonl").read_text().splitlines()
    edited = [
        json.dumps(c | {"text": c["text"] + " (revised)"}) if c["source"] == "doc00007.md" else json.dumps(c)
        for c in map(json.loads, chunks)
    ]
    (root / "v2" / "chunks.jsonl").write_text("\n".join(edited) + "\n")
    manifest = json.loads((root / "v2" / "manifest.json").read_text())
    manifest["document_hashes"]["doc00007.md"] = "revised"
    (root / "v2" / "manifest.json").write_text(json.dumps(manifest))
    return root / "v1", root / "v2"


def test_the_official_pinecone_sdk_runs_against_the_fake(pinecone):
    from pinecone import Pinecone
    from pinecone.errors import UnauthorizedError

    served, state = pinecone
    index = Pinecone(api_key=PINECONE_KEY).Index(host=served.url)
    a, b = [0.1] * DIM, [0.1] * (DIM - 1) + [0.9]
    assert (
        index.upsert(
            vectors=[("a", a, {"source": "x.md"}), ("b", b, {"source": "y.md"})], namespace="ns"
        ).upserted_count
        == 2
    )
    result = index.query(vector=a, top_k=2, namespace="ns", include_metadata=True, filter={"source": {"$in": ["x.md"]}})
    assert [m.id for m in result.matches] == ["a"] and result.matches[0].score == pytest.approx(1.0)
    assert index.fetch(ids=["b"], namespace="ns").vectors["b"].metadata == {"source": "y.md"}
    assert list(index.fetch_by_metadata(filter={"source": "y.md"}, namespace="ns").vectors) == ["b"]
    index.delete(filter={"source": "x.md"}, namespace="ns")
    assert index.describe_index_stats().namespaces["ns"].vector_count == 1
    assert set(state.versions) == {"2026-07"}  # the SDK's API version, which Samvad's adapter sends too
    with pytest.raises(UnauthorizedError):
        Pinecone(api_key="wrong").Index(host=served.url).describe_index_stats()
    for bad, message in [
        ([("z", [0.0] * DIM)], "non-zero"),
        ([("z", [0.1] * (DIM + 1))], "dimension"),
        ([("z", a, {"text": "x" * 41_000})], "Metadata size"),
        ([(str(i), a) for i in range(1001)], "1000 vectors"),
    ]:
        with pytest.raises(Exception, match=message):
            index.upsert(vectors=bad, namespace="ns")


async def test_pinecone_loads_in_batches_within_the_limits_and_updates_by_copying(pinecone, versions):
    served, state = pinecone
    v1, v2 = versions
    settings = PineconeSettings(
        base_url=served.url, api_key=SecretStr(PINECONE_KEY), upsert_records=300, upsert_bytes=200_000
    )
    store = await PineconeStore.connect(settings)
    info = await store.load(v1, "v1")
    upserts = [size for path, size in state.calls if path == "/vectors/upsert"]
    assert info.sent == SIZE and len(upserts) >= SIZE // 300
    assert max(upserts) <= 200_000  # every request under the configured byte cap (Pinecone's is 2 MB)
    await store.publish("v1")
    state.calls.clear()
    info = await store.load(v2, "v2", previous="v1")
    assert (info.sent, info.copied) == (100, SIZE - 100)  # only the revised document came from the folder
    pages = [path for path, _ in state.calls if path == "/vectors/fetch_by_metadata"]
    assert len(pages) >= 3  # 2,400 unchanged records read back a page (1,000) at a time
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    hits = await store.query("v2", query, 10)
    assert len(hits) == 10 and hits == sorted(hits, key=lambda h: -h.score)
    revised = [h for h in await store.query("v2", query, SIZE) if h.source == "doc00007.md"]
    assert len(revised) == 100 and all(h.text.endswith("(revised)") for h in revised)


async def test_pinecone_waits_until_a_load_is_counted_before_it_can_go_live(pinecone, versions):
    served, state = pinecone
    state.lag_s = 1.0  # Pinecone is eventually consistent: written records show up a little later
    store = await PineconeStore.connect(PineconeSettings(base_url=served.url, api_key=SecretStr(PINECONE_KEY)))
    await store.load(versions[0], "v1")
    await store.publish("v1")
    assert await store.live() == "v1"
    assert len(await store.query("v1", np.ones(DIM, dtype=np.float32), SIZE)) == SIZE  # all of it, at once


async def test_pinecone_refusals_are_clear(pinecone, versions):
    served, state = pinecone
    with pytest.raises(StoreDown, match="Unauthorized"):
        await PineconeStore.connect(PineconeSettings(base_url=served.url, api_key=SecretStr("wrong")))
    with pytest.raises(ValueError, match="SAMVAD_PINECONE_API_KEY"):
        PineconeStore(PineconeSettings(base_url=served.url))
    store = await PineconeStore.connect(PineconeSettings(base_url=served.url, api_key=SecretStr(PINECONE_KEY)))
    other = versions[0].parent / "wide"
    synthetic_version(other, 10, DIM * 2)
    with pytest.raises(ValueError, match=f"holds {DIM}-dim vectors"):
        await store.load(other, "wide")


async def test_weaviate_loads_pages_back_and_moves_its_alias(weaviate, versions):
    served, state = weaviate
    v1, v2 = versions
    store = await WeaviateStore.connect(
        WeaviateSettings(base_url=served.url, api_key=SecretStr(WEAVIATE_KEY), batch_objects=400)
    )
    await store.load(v1, "v1")
    assert sum(1 for path, _ in state.calls if path == "/v1/batch/objects") == -(-SIZE // 400)
    assert await store.publish("v1") is None and state.aliases == {"SamvadChunksLive": "SamvadChunks_v1"}
    state.calls.clear()
    info = await store.load(v2, "v2", previous="v1")
    assert (info.sent, info.copied) == (100, SIZE - 100)
    assert sum(1 for path, _ in state.calls if path == "/v1/objects") >= SIZE // 500  # read by cursor
    assert await store.publish("v2") == "v1" and await store.live() == "v2"
    with pytest.raises(ValueError, match="live"):
        await store.drop("v2")
    await store.drop("v1")
    assert "SamvadChunks_v1" not in state.classes
    assert await store.delete_documents("v2", ["doc00007.md"]) == 100


async def test_weaviate_refusals_are_clear(weaviate, versions):
    served, state = weaviate
    with pytest.raises(StoreDown, match="invalid api key"):
        await WeaviateStore.connect(WeaviateSettings(base_url=served.url, api_key=SecretStr("wrong")))
    store = await WeaviateStore.connect(WeaviateSettings(base_url=served.url, api_key=SecretStr(WEAVIATE_KEY)))
    with pytest.raises(LookupError):
        await store.describe("never")
    state.classes["SamvadChunks_half"] = {
        "class": "SamvadChunks_half",
        "description": '{"embedder": "synthetic", "dimension": 16, "chunks": 10}',
    }
    state.objects["SamvadChunks_half"] = {}
    with pytest.raises(LookupError, match="holds 0 of 10"):  # an import that stopped half way is not publishable
        await store.publish("half")


async def test_faiss_is_a_store_like_the_others(tmp_path, versions):
    """The default store behind the same interface: a folder is a version (nothing sent), the
    live pointer is the rag.index_dir symlink, answers are the folder's own."""
    import faiss

    from rag_index.stores.base import faiss_hits
    from rag_index.stores.faiss import FaissStore

    v1, v2 = versions
    store = FaissStore(tmp_path / "index" / "current")
    assert await store.live() is None
    info = await store.load(v1)
    assert (info.version, info.chunks, info.sent) == ("v1", SIZE, 0)
    await store.load(v2)
    assert await store.publish("v1") is None and await store.publish("v2") == "v1"
    assert await store.live() == "v2" and (tmp_path / "index" / "current").resolve() == v2.resolve()
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    chunks = [json.loads(line) for line in (v2 / "chunks.jsonl").read_text().splitlines()]
    assert await store.query("v2", query, 5) == faiss_hits(faiss.read_index(str(v2 / "index.faiss")), chunks, query, 5)
    with pytest.raises(ValueError, match="live"):
        await store.drop("v2")
    with pytest.raises(ValueError, match="immutable"):
        await store.delete_documents("v2", ["doc00007.md"])
    await store.drop("v1")
    assert v1.is_dir() and not (tmp_path / "index" / "versions" / "v1").exists()  # only the name goes
    with pytest.raises(LookupError):
        await store.describe("../v1")
