"""Every model a config can select is priced in the shipped configs: a call that costs money is
never recorded as free (or "unpriced") because its price entry was forgotten."""

import typing

import pytest

from samvad.providers.elevenlabs.config import ElevenLabsSettings
from samvad.providers.sarvam.config import SarvamSettings
from samvad.settings import REPO_ROOT, load_settings

pytestmark = pytest.mark.unit


def _choices(model, field: str) -> set[str]:
    return set(typing.get_args(model.model_fields[field].annotation))


@pytest.mark.parametrize("config", ["default.yaml", "sarvam.yaml"])
def test_every_selectable_model_has_a_price(config):
    pricing = load_settings(REPO_ROOT / "configs" / config).pricing
    sarvam = (
        _choices(SarvamSettings, "chat_model")
        | _choices(SarvamSettings, "tts_model")
        | _choices(SarvamSettings, "translate_model")
        | {"saaras:v3", "saaras:v4"}
    )
    assert sarvam - set(pricing["sarvam"]) == set()
    if config == "default.yaml":
        assert "*" in pricing["elevenlabs"] and pricing["elevenlabs"]["*"].per_character == 1.0  # the other models
        flash = [m for m in _choices(ElevenLabsSettings, "model_id") if "flash" in m or "turbo" in m]
        assert all(pricing["elevenlabs"][m].per_character == 0.5 for m in flash)  # half a credit a character
