"""What a vendor module declares: its settings section and a constructor per provider name and
stage. `catalog` finds the declarations, `Settings` takes the sections and the allowed provider
names from it, and `registry` builds engines by name, so adding a vendor is one new package under
`samvad/providers/` (plus its prices in the config, its fake route and its test)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from samvad.providers.base import Chat, LanguageIdentifier, RealtimeSpeechToText, Recognizer, Speech, Translation
    from samvad.settings import Settings


class VendorSettings(BaseModel):
    """A cloud vendor's section, `providers.<section>`; its key also reads `SAMVAD_<SECTION>_API_KEY`."""

    section: ClassVar[str]

    api_key: SecretStr | None = None
    base_url: str
    timeout_s: float = 15.0  # per request; streams: time between chunks
    connect_timeout_s: float = 3.0
    max_retries: int = 2  # on 408/409/429/5xx and dropped connections
    max_retry_wait_s: float = 8.0  # a longer retry-after fails over instead of waiting


@dataclass(frozen=True)
class Vendor:
    """Constructors by stage and provider name. They take the whole settings (an engine may need
    more than its vendor's section, e.g. the language table) and import the engine's module only
    when called, so finding the vendors imports no client library."""

    name: str
    settings: type[VendorSettings] | None = None  # None: configured inside the stage's own section
    asr: Mapping[str, Callable[[Settings], Recognizer]] = field(default_factory=dict)
    # The answerer's constructor also says whether to warm its index now (registry.build_llm).
    llm: Mapping[str, Callable[[Settings, bool], Chat]] = field(default_factory=dict)
    translation: Mapping[str, Callable[[Settings], Translation]] = field(default_factory=dict)
    tts: Mapping[str, Callable[[Settings], Speech]] = field(default_factory=dict)
    realtime_asr: Mapping[str, Callable[[Settings], RealtimeSpeechToText]] = field(default_factory=dict)
    language_id: Mapping[str, Callable[[Settings], LanguageIdentifier]] = field(default_factory=dict)
