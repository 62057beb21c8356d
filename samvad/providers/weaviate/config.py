"""Weaviate's settings section, `providers.weaviate` (the vector store `rag.store: weaviate`,
adapter `rag_index/stores/weaviate.py`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from samvad.providers.vendor import VendorSettings


class WeaviateSettings(VendorSettings):
    section: ClassVar[str] = "weaviate"

    base_url: str = "http://localhost:8080"  # REST and GraphQL, under /v1; a key is sent as a bearer token
    # Collections `<prefix>_<version>` hold the versions; the alias `<prefix>Live` points at the
    # live one (collection aliases: Weaviate 1.32 or later).
    collection_prefix: str = Field("SamvadChunks", pattern=r"^[A-Z][A-Za-z0-9]{0,30}$")
    timeout_s: float = 5.0
    batch_objects: int = Field(200, ge=1, le=1000)
