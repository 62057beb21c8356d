"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server)."""
