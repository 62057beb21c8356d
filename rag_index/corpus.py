"""Corpus loading (Markdown, plain text, HTML, PDF) and chunking.

Chunks follow the document's structure: a chunk never spans two headings, paragraphs are
packed up to `chunk_chars`, and consecutive chunks of a section share up to `overlap_chars`
of whole sentences so an answer cut at a chunk edge is still retrievable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from samvad.errors import InputError
from samvad.sentences import split_sentences

SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf"}
MAX_FILE_BYTES = 20 * 1024 * 1024  # larger files are skipped with a warning
_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")


@dataclass(frozen=True)
class Document:
    doc_id: str  # path relative to the corpus root, with forward slashes
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def title(self) -> str:
        for line in self.text.splitlines():
            m = _HEADING.match(line)
            if m:
                return m.group(2)
        return self.doc_id


@dataclass(frozen=True)
class Chunk:
    source: str
    heading: str
    text: str
    start: int  # character offsets in the source document
    end: int


def load_corpus(root: Path) -> tuple[list[Document], list[str]]:
    """Read every supported file under `root`. Returns (documents, warnings for skipped files)."""
    if not root.is_dir():
        raise InputError(f"corpus folder not found: {root}", code="corpus_not_found")
    docs, warnings = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() not in SUFFIXES:
            warnings.append(f"{rel}: skipped (unsupported type {path.suffix or 'none'})")
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            warnings.append(f"{rel}: skipped (larger than {MAX_FILE_BYTES // 2**20} MiB)")
            continue
        try:
            text = _read(path)
        except UnicodeDecodeError:
            warnings.append(f"{rel}: skipped (not UTF-8 text)")
            continue
        except Exception as exc:  # noqa: BLE001 - a broken file is listed and skipped, the build goes on
            warnings.append(f"{rel}: skipped (unreadable {path.suffix.lower()[1:]}: {type(exc).__name__})")
            continue
        if not text.strip():
            warnings.append(f"{rel}: skipped (empty)")
            continue
        docs.append(Document(rel, text.replace("\r\n", "\n")))
    if not docs:
        raise InputError(
            f"no readable documents in {root} (looked for {', '.join(sorted(SUFFIXES))})", code="corpus_empty"
        )
    return docs, warnings


def _read(path: Path) -> str:
    """Document text, with headings as Markdown `#` lines so chunking can follow them."""
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(path.read_bytes(), "html.parser")
        for tag in soup(["script", "style", "nav", "header", "footer", "noscript"]):
            tag.decompose()
        lines = []
        for el in soup.find_all(["h1", "h2", "h3", "h4", "p", "li", "td"]):
            text = " ".join(el.get_text(" ", strip=True).split())
            if text:
                lines.append(f"{'#' * int(el.name[1])} {text}" if el.name.startswith("h") else text)
        return "\n\n".join(lines)
    if suffix == ".pdf":
        from pypdf import PdfReader

        pages = [page.extract_text() or "" for page in PdfReader(path).pages]
        title = path.stem.replace("-", " ").replace("_", " ").strip().capitalize()
        return f"# {title}\n\n" + "\n\n".join(p.strip() for p in pages if p.strip())
    return path.read_text(encoding="utf-8")


def _sections(text: str) -> list[tuple[str, list[tuple[int, int]]]]:
    """(heading path, paragraph spans) per section; spans are offsets into `text`."""
    sections: list[tuple[str, list[tuple[int, int]]]] = []
    headings: list[str] = []
    current: list[tuple[int, int]] = []
    para_start = None
    offset = 0

    def close_paragraph(end: int) -> None:
        nonlocal para_start
        if para_start is not None:
            current.append((para_start, end))
            para_start = None

    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        m = _HEADING.match(stripped)
        if m:
            close_paragraph(offset)
            if current:
                sections.append((" > ".join(headings), current))
            current = []
            level = len(m.group(1))
            headings = headings[: level - 1] + [m.group(2)]
        elif not stripped:
            close_paragraph(offset)
        elif para_start is None:
            para_start = offset
        offset += len(line)
    close_paragraph(offset)
    if current:
        sections.append((" > ".join(headings), current))
    return sections


def _tail_sentences(text: str, limit: int) -> str:
    """The last whole sentences of `text` that fit in `limit` characters."""
    out: list[str] = []
    for sentence in reversed(split_sentences(text)):
        if sum(len(s) + 1 for s in out) + len(sentence) > limit:
            break
        out.insert(0, sentence)
    return " ".join(out)


def chunk_document(doc: Document, chunk_chars: int, overlap_chars: int) -> list[Chunk]:
    if chunk_chars <= overlap_chars:
        raise InputError("chunk_chars must be larger than overlap_chars", code="invalid_chunking")
    chunks: list[Chunk] = []
    for heading, spans in _sections(doc.text):
        prefix = f"{heading}\n" if heading else ""
        body, start, end = "", spans[0][0], spans[0][0]
        for s, e in spans:
            para = doc.text[s:e].strip()
            if body and len(body) + len(para) + 2 > chunk_chars:
                chunks.append(Chunk(doc.doc_id, heading, prefix + body, start, end))
                overlap = _tail_sentences(body, overlap_chars)
                body, start = (overlap + "\n\n" if overlap else ""), s
            body += ("\n\n" if body and not body.endswith("\n\n") else "") + para
            end = e
        if body.strip():
            chunks.append(Chunk(doc.doc_id, heading, prefix + body.strip(), start, end))
    return chunks


def corpus_hash(docs: list[Document]) -> str:
    h = hashlib.sha256()
    for d in sorted(docs, key=lambda d: d.doc_id):
        h.update(f"{d.doc_id}\0{d.sha256}\n".encode())
    return h.hexdigest()
