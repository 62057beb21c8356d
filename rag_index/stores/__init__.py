"""Vector stores an index version can be served from, behind one interface (`base.VectorStore`):
FAISS (the built folder itself, in each Retriever replica; the default), and the shared ones:
pgvector (the configured PostgreSQL), Pinecone and Weaviate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from samvad.settings import ConfigError

if TYPE_CHECKING:
    from rag_index.stores.base import VectorStore
    from samvad.settings import Settings

RemoteStore = Literal["pgvector", "pinecone", "weaviate"]
REMOTE: tuple[RemoteStore, ...] = ("pgvector", "pinecone", "weaviate")


async def open_store(s: Settings, name: str, knowledge_base: str | None = None) -> VectorStore:
    """A connected store, as configured (`rag.index_dir`, `database_url`, `providers.pinecone`,
    `providers.weaviate`), whose live pointer is the knowledge base's (None: the default one)."""
    if name == "faiss":
        from rag_index.stores.faiss import FaissStore

        return FaissStore(s.rag.pointer(knowledge_base))
    if name == "pgvector":
        from rag_index.stores.pgvector import PgVectorStore

        if not s.database_url:
            raise ConfigError("the pgvector store needs database_url (the PostgreSQL that holds the index)")
        return await PgVectorStore.connect(s.database_url, knowledge_base=knowledge_base)
    if name == "pinecone":
        from rag_index.stores.pinecone import PineconeStore
        from samvad.providers.pinecone.config import PineconeSettings

        return await PineconeStore.connect(s.providers.of(PineconeSettings), knowledge_base)
    if name == "weaviate":
        from rag_index.stores.weaviate import WeaviateStore
        from samvad.providers.weaviate.config import WeaviateSettings

        return await WeaviateStore.connect(s.providers.of(WeaviateSettings), knowledge_base)
    raise ConfigError(f"unknown vector store {name!r}: one of {', '.join(REMOTE)} (or faiss, the index folder)")
