"""Who may open a phone stream, and which webhook is really the carrier's.

A phone route's URLs carry a token: `v1<scope><route id>x<expiry>x<mac>`, an HMAC (a secret of
its own, derived from the resume secret) over the scope, the carrier, the route and the expiry,
letters and digits only (Plivo's extraHeaders allow nothing else). Scope `a` opens an answer
webhook (long-lived, pasted into a carrier's console), `s` a media stream (minutes; minted by
an answer webhook for one call, whose carrier call id its MAC covers: the stream that presents it
must start as that call, and it opens one stream only, `samvad.storage.once`). Twilio's
answer webhook is checked by its own signature instead (`X-Twilio-Signature`); Plivo's by its
token and, given the account's auth token, by `X-Plivo-Signature-V3` too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import parse_qs, urlsplit

Scope = Literal["a", "s"]  # answer webhook, media stream
# v1<scope><route>x<expiry>x[<nonce>x]<mac>: stream tokens carry a nonce, so that two minted in
# the same second for the same route differ (each opens one stream).
# No leading zeros: one token has one spelling (the one-stream rule counts spellings).
_TOKEN = re.compile(r"^v1([as])(0|[1-9][0-9]{0,17})x([1-9][0-9]{0,11})x(?:([0-9a-f]{12})x)?([0-9a-f]{32})$")


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"samvad phone tokens", hashlib.sha256).digest()


def _mac(secret: str, scope: str, carrier: str, route_id: int, expiry: int, nonce: str = "", call: str = "") -> str:
    msg = f"{scope}\0{carrier}\0{route_id}\0{expiry}" + (f"\0{nonce}" if nonce else "") + (f"\0{call}" if call else "")
    return hmac.new(_key(secret), msg.encode(), hashlib.sha256).hexdigest()[:32]


def make(
    secret: str, scope: Scope, carrier: str, route_id: int, ttl_s: float, now: float | None = None, call: str = ""
) -> str:
    """A token; a stream token has a nonce of its own, and `call` (a carrier call id) binds it
    to that call."""
    expiry = int((now if now is not None else time.time()) + ttl_s)
    nonce = secrets.token_hex(6) if scope == "s" else ""
    mac = _mac(secret, scope, carrier, route_id, expiry, nonce, call)
    return f"v1{scope}{route_id}x{expiry}x" + (f"{nonce}x" if nonce else "") + mac


def check(
    secret: str, token: str | None, scope: Scope, carrier: str, now: float | None = None, call: str = ""
) -> tuple[Literal["ok", "expired", "invalid"], int | None]:
    """("ok", route id), ("expired", None) for a genuine token past its time, else ("invalid", None).
    A token bound to a call is genuine only for that `call`; an unbound one (made without a
    call id, by the CLI or a carrier that sends none) for any."""
    m = _TOKEN.match(token or "")
    if m is None or m.group(1) != scope:
        return "invalid", None
    route_id, expiry, nonce = int(m.group(2)), int(m.group(3)), m.group(4) or ""
    macs = {_mac(secret, scope, carrier, route_id, expiry, nonce, c) for c in {call, ""}}
    if not any(hmac.compare_digest(m.group(5), mac) for mac in macs):
        return "invalid", None
    if expiry < (now if now is not None else time.time()):
        return "expired", None
    return "ok", route_id


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's X-Twilio-Signature: base64 HMAC-SHA1 of the full URL followed by each POST
    parameter's name and value, sorted by name."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def twilio_valid(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    if not signature:
        return False
    candidates = {url}
    # Twilio signs the URL as it requested it: with or without the default port.
    candidates.add(re.sub(r"^(https://[^/:]+):443(/|$)", r"\1\2", url))
    candidates.add(re.sub(r"^(https://[^/:]+)(/|$)", r"\1:443\2", url, count=1))
    # As bytes: compare_digest refuses str with non-ASCII, and a header may carry any Latin-1.
    return any(
        hmac.compare_digest(twilio_signature(auth_token, u, params).encode(), signature.encode()) for u in candidates
    )


def plivo_signature(auth_token: str, method: str, url: str, form: Mapping[str, Sequence[str]], nonce: str) -> str:
    """Plivo's X-Plivo-Signature-V3: base64 HMAC-SHA256 of the URL without its query, then `?`
    and the query's pairs sorted (`k=v&k=v`); for a POST with a form, then `.` (after a query)
    and the form's names and values sorted and run together (`kvkv`); then `.` and the nonce."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    data = f"{parts.scheme}://{parts.netloc}{parts.path}"
    pairs = "&".join(f"{k}={v}" for k in sorted(query) for v in sorted(query[k]))
    posted = method.upper() == "POST" and bool(form)
    if pairs or posted:
        data += "?" + pairs
    if posted:
        data += ("." if pairs else "") + "".join(f"{k}{v}" for k in sorted(form) for v in sorted(form[k]))
    signed = hmac.new(auth_token.encode(), f"{data}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(signed).decode()


def plivo_valid(
    auth_token: str, method: str, url: str, form: Mapping[str, Sequence[str]], nonce: str | None, header: str | None
) -> bool:
    """The header lists one or more signatures (comma-separated); one made with this token will do."""
    if not nonce or not header:
        return False
    mine = plivo_signature(auth_token, method, url, form, nonce)
    return any(hmac.compare_digest(mine.encode(), given.strip().encode()) for given in header.split(","))
