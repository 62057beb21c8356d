"""Pinecone's settings section, `providers.pinecone` (the vector store `rag.store: pinecone`,
adapter `rag_index/stores/pinecone.py`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from samvad.providers.vendor import VendorSettings


class PineconeSettings(VendorSettings):
    section: ClassVar[str] = "pinecone"

    # The index's own host (https://<index>-<project>.svc.<region>.pinecone.io): Pinecone's
    # advice for production is to target an index by host rather than look it up per process.
    # Create a serverless index with the embedder's dimension and metric cosine first (README).
    base_url: str = ""
    api_version: str = "2026-07"  # sent as X-Pinecone-Api-Version
    # Namespaces `<prefix>-<version>` hold the versions; `<prefix>-meta` their descriptions and
    # the live pointer. One index can serve several deployments with different prefixes.
    namespace_prefix: str = Field("samvad", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    timeout_s: float = 5.0
    # Published limits: 1,000 records and 2 MB per upsert, 1,000 ids per fetch or delete.
    upsert_records: int = Field(200, ge=1, le=1000)
    upsert_bytes: int = Field(1_900_000, ge=10_000, le=2_000_000)
