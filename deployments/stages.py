"""One thin deployment per stage: `serve.deployment` over the plain stage service, whose
replicas record Samvad's metrics through Ray. Replica counts, CPU fractions and autoscaling
come from serve_config.yaml."""

from ray import serve

from actors import telemetry
from rag_index.stage import RetrievalStage
from samvad.stages import AsrStage, LlmStage, TranslationStage, TtsStage


def _deployment(name: str, core: type):
    class Stage(core):
        def __init__(self, *args, **kwargs) -> None:
            telemetry.install()
            super().__init__(*args, **kwargs)

    Stage.__name__ = Stage.__qualname__ = name
    return serve.deployment(name=name)(Stage)


ASR = _deployment("ASR", AsrStage)
LLM = _deployment("LLM", LlmStage)
Translation = _deployment("Translation", TranslationStage)
TTS = _deployment("TTS", TtsStage)
Retriever = _deployment("Retriever", RetrievalStage)
