"""What the tests and the benchmarks share: fake provider servers that follow the vendors'
published contracts, speech made with the offline eSpeak engine, WER scoring, and a helper to
run a coroutine from synchronous code. Not shipped in the package."""
