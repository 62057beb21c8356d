import pytest

from rag_index.corpus import Document, chunk_document, load_corpus
from samvad.errors import InputError
from samvad.settings import REPO_ROOT

pytestmark = pytest.mark.unit

DOC = """# Title

## Section A
First paragraph of A. It has two sentences.

Second paragraph of A is here. It closes section A.

## Section B
Only paragraph of B.
"""


def test_chunks_never_span_headings_and_keep_offsets():
    doc = Document("x.md", DOC)
    chunks = chunk_document(doc, chunk_chars=1000, overlap_chars=100)
    assert [c.heading for c in chunks] == ["Title > Section A", "Title > Section B"]
    for c in chunks:
        assert c.text.startswith(c.heading)
        assert DOC[c.start : c.end].strip().split("\n")[0] in c.text


def test_small_chunks_overlap_by_whole_sentences():
    doc = Document("x.md", DOC)
    chunks = [c for c in chunk_document(doc, chunk_chars=60, overlap_chars=40) if c.heading.endswith("A")]
    assert len(chunks) == 2
    assert "It has two sentences." in chunks[1].text  # carried over from chunk 1


def test_sample_corpus_is_big_enough():
    docs, warnings = load_corpus(REPO_ROOT / "data" / "sample_corpus")
    assert len(docs) >= 40 and not warnings
    chunks = [c for d in docs for c in chunk_document(d, 700, 120)]
    assert len(chunks) >= 150


def test_bad_corpora(tmp_path):
    with pytest.raises(InputError) as err:
        load_corpus(tmp_path / "missing")
    assert err.value.code == "corpus_not_found"
    (tmp_path / "bin.md").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError) as err:
        load_corpus(tmp_path)
    assert err.value.code == "corpus_empty"
    (tmp_path / "ok.md").write_text("# Ok\n\nSome text.\n")
    docs, warnings = load_corpus(tmp_path)
    assert [d.doc_id for d in docs] == ["ok.md"]
    assert len(warnings) == 2 and any("UTF-8" in w for w in warnings)
