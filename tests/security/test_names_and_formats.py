"""Names and formats an attacker chooses: index version names that are paths or differ from a
live one only by case, and audio containers the API does not document."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from rag_index.retriever import Retriever
from samvad.audio import decode_audio
from samvad.errors import InputError
from tests.integration.test_vector_stores import backend, built, connected  # noqa: F401 - the fixtures, shared

pytestmark = pytest.mark.integration


async def test_a_version_named_like_another_never_touches_it(backend, built, tmp_path):
    """ "V1" beside a live "v1" (where a store folds case into one table or namespace) is refused
    or kept apart: v1 answers exactly as before. Names that are paths are refused."""
    folder, embedder = built
    vector = Retriever(folder, embedder).query_vectors(["How do I block my lost debit card?"])[0]
    async with connected(backend) as store:
        await store.load(folder, "v1")
        await store.publish("v1")
        before = [h.text for h in await store.query("v1", vector, 3)]
        try:
            await store.load(folder, "V1")
        except ValueError as exc:
            assert "case" in str(exc) or "name" in str(exc)
        assert [h.text for h in await store.query("v1", vector, 3)] == before and await store.live() == "v1"
        for bad in ("..", "../v1", "v1/../../x", ".hidden"):
            with pytest.raises((ValueError, LookupError)):
                await store.load(folder, bad)


async def test_faiss_version_names_are_never_paths(built, tmp_path):
    from rag_index.stores.faiss import FaissStore

    folder, _ = built
    store = FaissStore(tmp_path / "index" / "current")
    for bad in ("..", "../outside", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            await store.load(folder, bad)
        with pytest.raises(LookupError):
            await store.publish(bad)
    assert not (tmp_path / "outside").exists()
    assert (await store.load(folder, "v1.2-x")).version == "v1.2-x"


@pytest.mark.parametrize("fmt", ["AIFF", "AU", "W64", "CAF"])
def test_only_the_documented_formats_are_decoded(fmt):
    """libsndfile parses dozens of containers; the API takes the ones it documents (WAV, FLAC,
    OGG): every other parser is attack surface no caller needs."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((1600, 1), dtype=np.float32), 16000, format=fmt, subtype="PCM_16")
    with pytest.raises(InputError) as err:
        decode_audio(buf.getvalue(), target_rate=16000, max_seconds=60)
    assert err.value.code == "audio_unreadable" and "WAV, FLAC or OGG" in err.value.message
    for ok in ("WAV", "FLAC", "OGG"):
        buf = io.BytesIO()
        sf.write(
            buf, np.zeros((16000, 1), dtype=np.float32), 16000, format=ok, subtype="VORBIS" if ok == "OGG" else "PCM_16"
        )
        assert decode_audio(buf.getvalue(), target_rate=16000, max_seconds=60).duration == pytest.approx(1.0, abs=0.05)
