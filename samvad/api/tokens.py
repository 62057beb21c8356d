"""Resume tokens: a voice session's proof that the caller may resume it.

`v1.<key id>.<expiry>.<mac>`: an HMAC (its own secret, not the API-key one) over the session id,
the API key id and the expiry. A token is refused once it expires, when another key presents it,
and after the secret rotates; anything malformed is simply invalid, never an exception."""

from __future__ import annotations

import hashlib
import hmac
import time

MAX_LEN = 128


def make(secret: str, session_id: str, key_id: int, ttl_s: float, now: float | None = None) -> str:
    expiry = int((now if now is not None else time.time()) + ttl_s)
    return f"v1.{key_id}.{expiry}.{_mac(secret, session_id, key_id, expiry)}"


def check(secret: str, token: str | None, session_id: str, key_id: int, now: float | None = None) -> str:
    """ "ok", "expired" (this key's genuine token, too old) or "invalid" (malformed, forged, for
    another session or another key: indistinguishable from a session that does not exist)."""
    if not token or len(token) > MAX_LEN or not token.isascii():
        return "invalid"
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit() or not parts[2].isdigit() or len(parts[2]) > 12:
        return "invalid"
    if int(parts[1]) != key_id or not hmac.compare_digest(parts[3], _mac(secret, session_id, key_id, int(parts[2]))):
        return "invalid"
    return "expired" if int(parts[2]) < (now if now is not None else time.time()) else "ok"


def _mac(secret: str, session_id: str, key_id: int, expiry: int) -> str:
    msg = f"resume\0{session_id}\0{key_id}\0{expiry}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:32]
