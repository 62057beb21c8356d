"""Development secrets: `samvad run` and `samvad keys` on embedded servers generate the HMAC
secrets once and keep them in `var/secrets.json` (mode 0600), so a fresh clone runs with no
setup and still has no secret anyone else knows. Anything with a configured database is treated
as production and must be given its secrets (`samvad.settings.secret` refuses to start without)."""

from __future__ import annotations

import json
import os
import secrets

from pydantic import SecretStr

from samvad.settings import Settings

NAMES = ("key", "resume", "phone")


def with_dev_secrets(s: Settings) -> Settings:
    """`s` with any missing secret filled from (or newly written to) `data_dir/secrets.json`;
    also exported as SAMVAD_SERVICE__* so settings loaded later in this process agree."""
    missing = [n for n in NAMES if getattr(s.service, f"{n}_secret") is None]
    if not missing:
        return s
    path = s.data_dir / "secrets.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    if any(n not in stored for n in missing):
        stored |= {n: secrets.token_urlsafe(32) for n in missing if n not in stored}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f)
    for n in missing:
        os.environ[f"SAMVAD_SERVICE__{n.upper()}_SECRET"] = stored[n]
    return s.model_copy(
        update={"service": s.service.model_copy(update={f"{n}_secret": _secret(stored[n]) for n in missing})}
    )


def _secret(value: str) -> SecretStr:
    return SecretStr(value)
