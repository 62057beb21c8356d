"""The data scientists' tool: load and chunk a corpus, build a versioned FAISS index, retrieve."""
