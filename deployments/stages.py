"""One thin deployment per stage: `serve.deployment` over the plain stage service, whose
replicas record Samvad's metrics through Ray and build the service's engine from the settings
the graph was bound with. Replica counts, CPU fractions and autoscaling come from
serve_config.yaml."""

from typing import Any

from ray import serve

from actors import telemetry
from rag_index.stage import RetrievalStage
from samvad.settings import Settings
from samvad.stages import AsrStage, LlmStage, TranslationStage, TtsStage


def _deployment(name: str, core: Any) -> Any:
    class Stage(core):
        def __init__(self, settings: dict[str, Any]) -> None:
            telemetry.install()  # before the engines: their metrics go through Ray
            super().__init__(**core.parts(Settings.model_validate(settings)))

    Stage.__name__ = Stage.__qualname__ = name
    return serve.deployment(name=name)(Stage)


ASR = _deployment("ASR", AsrStage)
LLM = _deployment("LLM", LlmStage)
Translation = _deployment("Translation", TranslationStage)
TTS = _deployment("TTS", TtsStage)
Retriever = _deployment("Retriever", RetrievalStage)
