"""The data scientists' index tools: versions, incremental update, publish, eval, hot swap."""

import os
import shutil
import subprocess
import sys

import faiss
import pytest

from rag_index.build import MANIFEST, Manifest, build_index, publish
from rag_index.evaluate import evaluate, load_qa
from rag_index.retriever import IndexInvalidError, Retriever
from rag_index.stage import RetrievalStage
from samvad.embeddings import get_embedder
from samvad.errors import InputError
from samvad.settings import REPO_ROOT

pytestmark = [pytest.mark.unit, pytest.mark.models]  # builds indexes with the e5 embedder
CORPUS = REPO_ROOT / "data" / "sample_corpus"
QA = REPO_ROOT / "data" / "qa_sample.yaml"
FOLLOW_UPS = REPO_ROOT / "data" / "qa_followups.yaml"


@pytest.fixture(scope="module")
def embedder(settings):
    return get_embedder(settings.embeddings)


@pytest.fixture(scope="module")
def v1(tmp_path_factory, embedder, settings):
    out = tmp_path_factory.mktemp("idx") / "v1"
    build_index(CORPUS, out, embedder, chunk_chars=settings.rag.chunk_chars, overlap_chars=settings.rag.overlap_chars)
    return out


def test_recall_at_5_on_the_shipped_qa_set(v1, embedder):
    """The default (multilingual) embedder answers English, Hinglish, Devanagari Hindi and Tamil
    questions from the English corpus."""
    retriever = Retriever(v1, embedder)
    items = load_qa(QA, set(retriever.manifest.document_hashes))
    assert len(items) >= 120 and {i.kind for i in items} == {"plain", "paraphrase", "hinglish", "devanagari", "tamil"}
    scores = evaluate(retriever, items, k=5)
    print(scores)
    assert scores.recall_at_k >= 0.9 and scores.mrr >= 0.8
    assert 0 < scores.ndcg_at_k <= 1
    by = scores.by_kind
    assert by["plain"] >= 0.95 and by["paraphrase"] >= 0.9
    assert by["hinglish"] >= 0.9 and by["devanagari"] >= 0.85 and by["tamil"] >= 0.75


def test_minilm_stays_a_working_english_option(tmp_path, settings):
    """sentence-transformers with MiniLM (the light option): English as before, and the index
    records which model built it."""
    minilm = get_embedder(settings.embeddings.model_copy(update={"backend": "sentence-transformers"}))
    build_index(
        CORPUS, tmp_path / "m", minilm, chunk_chars=settings.rag.chunk_chars, overlap_chars=settings.rag.overlap_chars
    )
    retriever = Retriever(tmp_path / "m", minilm)
    assert retriever.manifest.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"
    items = [i for i in load_qa(QA, set(retriever.manifest.document_hashes)) if i.kind in ("plain", "paraphrase")]
    scores = evaluate(retriever, items, k=5)
    assert scores.recall_at_k >= 0.95, scores


def test_update_embeds_only_changed_documents_and_drops_deleted(tmp_path, v1, embedder, settings):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    edited = corpus / "branches" / "branch-hours.md"
    edited.write_text(edited.read_text() + "\n## Diwali\nAll branches close at 1 p.m. on Diwali day.\n")
    (corpus / "loans" / "gold-loan.md").unlink()
    before = Manifest.model_validate_json((v1 / MANIFEST).read_text())
    result = build_index(
        corpus,
        tmp_path / "v2",
        embedder,
        chunk_chars=before.chunk_chars,
        overlap_chars=before.overlap_chars,
        previous=v1,
    )
    from rag_index.corpus import Document, chunk_document

    expected = len(
        chunk_document(
            Document("branches/branch-hours.md", edited.read_text()), before.chunk_chars, before.overlap_chars
        )
    )
    assert result.manifest.embedded_chunks == expected  # only the edited document was embedded
    assert "loans/gold-loan.md" not in result.manifest.document_hashes
    v2 = Retriever(tmp_path / "v2", embedder)
    assert all(p.source != "loans/gold-loan.md" for p in v2.search("gold loan interest", 20))
    assert v2.search("Are branches open on Diwali?", 1)[0].source == "branches/branch-hours.md"
    # The old version is intact.
    assert Manifest.model_validate_json((v1 / MANIFEST).read_text()) == before
    # Reused vectors are the ones a full build computes.
    full = build_index(
        corpus, tmp_path / "full", embedder, chunk_chars=before.chunk_chars, overlap_chars=before.overlap_chars
    )
    assert full.manifest.chunks == result.manifest.chunks
    a, b = (
        faiss.read_index(str(tmp_path / "v2" / "index.faiss")),
        faiss.read_index(str(tmp_path / "full" / "index.faiss")),
    )
    assert abs(a.reconstruct_n(0, a.ntotal) - b.reconstruct_n(0, b.ntotal)).max() < 1e-4


def test_corrupt_or_mismatched_indexes_are_refused(tmp_path, v1, embedder):
    bad = tmp_path / "bad"
    shutil.copytree(v1, bad)
    (bad / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexInvalidError):
        Retriever(bad, embedder)
    other = tmp_path / "other"
    shutil.copytree(v1, other)
    m = Manifest.model_validate_json((other / MANIFEST).read_text())
    (other / MANIFEST).write_text(
        m.model_copy(update={"embedding_model": "some/other-model", "dimension": 768}).model_dump_json()
    )
    with pytest.raises(IndexInvalidError) as err:
        Retriever(other, embedder)
    assert "other-model" in err.value.message


def _with_moon_card(tmp_path, out, v1, embedder):
    """A version built from the sample corpus plus a document v1 does not have (the Moon card)."""
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "cards" / "moon-card.md").write_text(
        "# The Navtara Moon card\n\n## Fees\nThe Moon card has no annual fee and works on the lunar base.\n"
    )
    build_index(corpus, out, embedder, chunk_chars=700, overlap_chars=120, previous=v1)


def test_publish_and_hot_swap_keep_serving(tmp_path, v1, embedder, settings):
    live = tmp_path / "live" / "current"
    assert publish(v1, live) is None and os.path.realpath(live) == str(v1.resolve())
    s = settings.model_copy(update={"rag": settings.rag.model_copy(update={"index_dir": live, "reload_interval_s": 0})})
    stage = RetrievalStage(s)
    _with_moon_card(tmp_path, tmp_path / "v2", v1, embedder)

    async def scenario():
        assert (await stage.search("Moon card annual fee", 1))[0].source != "cards/moon-card.md"
        publish(tmp_path / "v2", live)
        status = await stage.reload_now()
        assert status["version"] == str((tmp_path / "v2").resolve())
        assert (await stage.search("Moon card annual fee", 1))[0].source == "cards/moon-card.md"
        # A broken version is refused; the good one stays live.
        broken = tmp_path / "v3"
        shutil.copytree(tmp_path / "v2", broken)
        (broken / "index.faiss").write_bytes(b"garbage")
        publish(broken, live)
        status = await stage.reload_now()
        assert status["version"] == str((tmp_path / "v2").resolve()) and "unreadable" in status["last_error"]
        assert (await stage.search("Moon card annual fee", 1))[0].source == "cards/moon-card.md"

    import asyncio

    asyncio.run(scenario())


def test_each_knowledge_base_answers_from_its_own_documents(tmp_path, v1, embedder, settings):
    """Two knowledge bases side by side: the default one and `moon`, whose corpus has a document
    the default's lacks. A turn asking one never gets the other's documents; `moon` is
    unavailable until something is published for it, then swaps in without a restart."""
    from samvad.errors import ProviderError

    live = tmp_path / "live" / "current"
    publish(v1, live)
    rag = settings.rag.model_copy(update={"index_dir": live, "reload_interval_s": 0, "knowledge_bases": ["moon"]})
    s = settings.model_copy(update={"rag": rag})
    stage = RetrievalStage(s)
    _with_moon_card(tmp_path, tmp_path / "moon1", v1, embedder)
    question = "Moon card annual fee"

    async def scenario():
        with pytest.raises(ProviderError) as nothing_yet:
            await stage.lookup(question, False, 1, knowledge_base="moon")
        assert nothing_yet.value.code == "retrieval_unavailable" and "--kb moon" in nothing_yet.value.message
        with pytest.raises(ProviderError):  # a name it does not serve: refused, not answered from another
            await stage.lookup(question, False, 1, knowledge_base="sun")
        publish(tmp_path / "moon1", rag.pointer("moon"))
        assert live.with_name("current@moon").is_symlink()
        status = await stage.reload_now()
        assert status["knowledge_bases"]["moon"]["version"] == str((tmp_path / "moon1").resolve())
        assert status["version"] == str(v1.resolve())  # the default one did not move
        _, moon = await stage.lookup(question, False, 1, knowledge_base="moon")
        _, default = await stage.lookup(question, False, 1)
        assert moon[0].source == "cards/moon-card.md" and default[0].source != "cards/moon-card.md"

    import asyncio

    asyncio.run(scenario())


def test_knowledge_base_names_are_checked():
    from pydantic import ValidationError

    from samvad.settings import RagSettings

    assert RagSettings(knowledge_bases=["acme", "acme_cards2"]).check_knowledge_base("acme") == "acme"
    assert RagSettings().check_knowledge_base("default") is None
    with pytest.raises(InputError) as unknown:
        RagSettings(knowledge_bases=["acme"]).check_knowledge_base("other")
    assert unknown.value.code == "unknown_knowledge_base" and "default, acme" in unknown.value.message
    # A key limited to some: the first is its default, the others' names are not told.
    rag = RagSettings(knowledge_bases=["acme", "beta"])
    assert rag.check_knowledge_base(None, ["beta", "default"]) == "beta"
    assert rag.check_knowledge_base("default", ["beta", "default"]) is None
    with pytest.raises(InputError) as not_its:
        rag.check_knowledge_base("acme", ["beta"])
    assert "'acme'" in not_its.value.message and not_its.value.message.endswith("one of beta")
    for bad in (["default"], ["Acme"], ["a-b"], ["x" * 41], ["acme", "acme"], ["../etc"]):
        with pytest.raises(ValidationError):
            RagSettings(knowledge_bases=bad)


def test_follow_ups_are_searched_with_the_question_they_follow(v1, embedder):
    retriever = Retriever(v1, embedder)
    items = load_qa(FOLLOW_UPS, set(retriever.manifest.document_hashes))
    assert sum(bool(i.history) and i.kind != "switch" for i in items) >= 20
    alone = evaluate(retriever, items, k=5, conversational=False)
    aware = evaluate(retriever, items, k=5)
    print("last utterance only", alone, "\nwith the conversation", aware)
    assert aware.follow_up_recall >= 0.85 and aware.follow_up_recall > alone.follow_up_recall
    assert aware.by_kind["switch"] >= alone.by_kind["switch"]  # a change of topic is not pulled back


def test_cli_eval_prints_follow_ups_side_by_side(v1):
    ok = subprocess.run(
        [sys.executable, "-m", "samvad", "index", "eval", str(v1), str(FOLLOW_UPS)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "last utterance only" in ok.stdout and "with the conversation" in ok.stdout
    assert "recall@k follow-ups" in ok.stdout


def test_cli_eval_compare_and_bad_qa(tmp_path, v1):
    qa = tmp_path / "qa.yaml"
    qa.write_text("- {question: 'hi', sources: [no/such-doc.md]}\n")
    bad = subprocess.run(
        [sys.executable, "-m", "samvad", "index", "eval", str(v1), str(qa)], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 1 and "qa_unknown_documents" in bad.stdout
    ok = subprocess.run(
        [sys.executable, "-m", "samvad", "index", "eval", str(v1), str(QA), "--compare", str(v1)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "recall@k" in ok.stdout and "+0.000" in ok.stdout


def test_cli_publishes_for_a_knowledge_base(tmp_path, v1):
    live = tmp_path / "live" / "current"
    env = {**os.environ, "SAMVAD_RAG__INDEX_DIR": str(live), "SAMVAD_RAG__KNOWLEDGE_BASES": '["moon"]'}

    def publish_cli(*args):
        cmd = [sys.executable, "-m", "samvad", "index", "publish", str(v1), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)

    ok = publish_cli("--kb", "moon")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert os.path.realpath(live.with_name("current@moon")) == str(v1.resolve()) and not live.exists()
    unknown = publish_cli("--kb", "sun")
    assert unknown.returncode == 1 and "unknown_knowledge_base" in unknown.stdout


def test_empty_corpus_fails_clearly(tmp_path, embedder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as err:
        build_index(tmp_path / "empty", tmp_path / "out", embedder, chunk_chars=700, overlap_chars=120)
    assert err.value.code == "corpus_empty"


def test_big_corpora_get_an_hnsw_index_and_keep_recall(tmp_path, embedder):
    result = build_index(CORPUS, tmp_path / "hnsw", embedder, chunk_chars=700, overlap_chars=120, ann_threshold=10)
    assert result.manifest.index_type == "IndexHNSWFlat" and result.manifest.index_params["efSearch"] == 64
    retriever = Retriever(tmp_path / "hnsw", embedder)
    scores = evaluate(retriever, load_qa(QA, set(retriever.manifest.document_hashes)), k=5)
    assert scores.recall_at_k >= 0.9
