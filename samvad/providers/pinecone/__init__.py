"""Pinecone: the serverless vector database, as a store for the RAG index (settings only here;
the adapter is `rag_index/stores/pinecone.py`)."""

from samvad.providers.pinecone.config import PineconeSettings
from samvad.providers.vendor import Vendor

VENDOR = Vendor("pinecone", settings=PineconeSettings)
