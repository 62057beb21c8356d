"""One thin deployment per stage: `serve.deployment` applied to the plain stage service.
Replica counts, CPU fractions and autoscaling come from serve_config.yaml."""

from ray import serve

from rag_index.stage import RetrievalStage
from samvad.stages import AsrStage, LlmStage, TranslationStage, TtsStage
from samvad.storage.service import StoreStage

ASR = serve.deployment(name="ASR")(AsrStage)
LLM = serve.deployment(name="LLM")(LlmStage)
Translation = serve.deployment(name="Translation")(TranslationStage)
TTS = serve.deployment(name="TTS")(TtsStage)
Retriever = serve.deployment(name="Retriever")(RetrievalStage)


class _Store(StoreStage):
    async def __del__(self) -> None:  # Serve awaits this when it stops the replica
        await self.close()


Store = serve.deployment(name="Store")(_Store)
