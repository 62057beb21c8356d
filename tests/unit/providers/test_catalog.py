"""Vendors register themselves (samvad/providers/catalog.py): a package under samvad/providers/
that declares a `VENDOR` is found, its provider names become valid config and the registry builds
them; no other module names a vendor."""

import sys
import textwrap

import pytest

import samvad.providers as providers_package
from samvad.providers import catalog, registry
from samvad.settings import Settings, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def acme(tmp_path, monkeypatch):
    """A new TTS vendor, written as a package the way a contributor would add one."""
    package = tmp_path / "acme"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from typing import ClassVar

            from samvad.providers.stub.engines import StubTTS
            from samvad.providers.vendor import Vendor, VendorSettings


            class AcmeSettings(VendorSettings):
                section: ClassVar[str] = "acme"
                base_url: str = "https://tts.acme.example"


            class AcmeTTS(StubTTS):
                name = "acme"


            VENDOR = Vendor("acme", settings=AcmeSettings, tts={"acme": lambda s: AcmeTTS()})
            """
        )
    )
    monkeypatch.setattr(providers_package, "__path__", [*providers_package.__path__, str(tmp_path)])
    catalog.vendors.cache_clear()
    yield
    sys.modules.pop("samvad.providers.acme", None)
    catalog.vendors.cache_clear()


def test_the_shipped_vendors_and_their_names():
    names = {"elevenlabs", "local", "openai", "pinecone", "sarvam", "stub", "weaviate"}
    assert {v.name for v in catalog.vendors()} == names
    assert set(catalog.sections()) == {"elevenlabs", "openai", "pinecone", "sarvam", "weaviate"}  # vector stores too
    assert set(catalog.table(lambda v: v.tts)) == {"elevenlabs", "espeak", "sarvam", "stub"}
    assert set(catalog.table(lambda v: v.asr)) == {"sarvam", "sarvam_stream", "stub", "whisper"}


def test_a_new_vendor_is_one_package(acme):
    assert "acme" in catalog.sections()
    s = Settings(tts={"providers": ["acme", "stub"]})  # valid config now
    engine = registry.build_tts(s)
    assert [p.name for p in engine.providers] == ["acme", "stub"]  # a failover chain over both


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown tts provider\(s\) \['acme'\]; known: \['elevenlabs'"):
        Settings(tts={"providers": ["acme"]})
    with pytest.raises(ValueError, match="unknown realtime_asr provider"):
        Settings(asr={"streaming": "whisper"})  # an offline recogniser has no realtime socket


def test_two_vendors_may_not_claim_one_name(acme, tmp_path):
    (tmp_path / "acme" / "__init__.py").write_text(
        (tmp_path / "acme" / "__init__.py").read_text().replace('tts={"acme"', 'tts={"espeak"')
    )
    with pytest.raises(RuntimeError, match="two vendors register provider 'espeak'"):
        catalog.table(lambda v: v.tts)


def test_a_vendor_key_by_its_documented_name(monkeypatch):
    from samvad.providers.elevenlabs.config import ElevenLabsSettings

    monkeypatch.setenv("SAMVAD_ELEVENLABS_API_KEY", "el-key")
    monkeypatch.setenv("SAMVAD_PROVIDERS__OPENAI__API_KEY", "oa-key")
    s = load_settings()
    assert s.providers.of(ElevenLabsSettings).api_key.get_secret_value() == "el-key"
    assert s.providers.openai.api_key.get_secret_value() == "oa-key"  # the nested name works as before
    with pytest.raises(ValueError, match="extra"):
        Settings(providers={"acme": {}})  # not a vendor here: a typo is an error, not ignored
