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


def test_html_and_pdf_documents_are_loaded_with_headings(tmp_path):
    (tmp_path / "faq.html").write_text(
        "<html><head><style>p{}</style><script>var x=1;</script></head><body><nav>Menu</nav>"
        "<h1>Card FAQ</h1><h2>Lost card</h2><p>Block it in the app at once.</p><ul><li>Call 1800-266-4400</li></ul></body></html>"
    )
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    with open(tmp_path / "blank-notice.pdf", "wb") as f:
        writer.write(f)
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    docs, warnings = load_corpus(tmp_path)
    by_id = {d.doc_id: d for d in docs}
    html = by_id["faq.html"]
    assert (
        "# Card FAQ" in html.text
        and "## Lost card" in html.text
        and "var x" not in html.text
        and "Menu" not in html.text
    )
    chunks = chunk_document(html, 700, 120)
    assert chunks[0].heading == "Card FAQ > Lost card" and "Block it in the app" in chunks[0].text
    assert "blank-notice.pdf" in by_id and by_id["blank-notice.pdf"].title == "Blank notice"
    assert any(w.startswith("broken.pdf: skipped") for w in warnings)
