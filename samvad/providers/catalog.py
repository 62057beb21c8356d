"""The vendors: every package under `samvad/providers/` that declares a `VENDOR`
(`samvad.providers.vendor.Vendor`). Found once per process; a package's `__init__` only imports
its settings model, so this is cheap enough for `Settings` to do at import."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from functools import cache
from typing import Literal, TypeVar

from samvad.providers.vendor import Vendor, VendorSettings

C = TypeVar("C")
Kind = Literal["asr", "llm", "translation", "tts", "realtime_asr", "language_id"]


@cache
def vendors() -> tuple[Vendor, ...]:
    import samvad.providers as package

    found = []
    for module in pkgutil.iter_modules(package.__path__):
        if module.ispkg:
            vendor = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "VENDOR", None)
            if isinstance(vendor, Vendor):
                found.append(vendor)
    return tuple(sorted(found, key=lambda v: v.name))


def sections() -> dict[str, type[VendorSettings]]:
    """`providers.<section>` -> its settings model."""
    return {v.settings.section: v.settings for v in vendors() if v.settings is not None}


def table(pick: Callable[[Vendor], Mapping[str, C]]) -> dict[str, C]:
    """Provider name -> constructor for one stage, e.g. `table(lambda v: v.tts)`."""
    found: dict[str, C] = {}
    for v in vendors():
        for name, build in pick(v).items():
            if name in found:
                raise RuntimeError(f"two vendors register provider {name!r} for one stage")
            found[name] = build
    return found


def check_names(kind: Kind, names: list[str]) -> list[str]:
    """Config validation: every provider name is one a vendor registered for this stage."""
    known = table(lambda v: getattr(v, kind))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {kind} provider(s) {unknown}; known: {sorted(known)}")
    return names
