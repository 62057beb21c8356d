"""Weaviate: the vector database, as a store for the RAG index (settings only here; the adapter
is `rag_index/stores/weaviate.py`)."""

from samvad.providers.vendor import Vendor
from samvad.providers.weaviate.config import WeaviateSettings

VENDOR = Vendor("weaviate", settings=WeaviateSettings)
