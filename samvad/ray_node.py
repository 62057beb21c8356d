"""How `samvad run` starts its one-machine Ray node so that nothing of Ray serves another machine.

Two things are needed, because Ray's listeners come in two kinds:
  - Ray's gRPC servers (GCS, raylet, every worker and Serve replica, including the replica's
    inter-deployment server, which unpickles what it is sent) bind every interface whatever the
    node's address. Only Ray's token auth guards them: with `RAY_AUTH_MODE=token` each of them
    refuses a call without the cluster's token before reading it.
  - Ray's Python HTTP servers (the dashboard agent, the runtime-env agent, the metrics exporters
    of the dashboard and the autoscaler) bind the node's address, and some check no token. On
    Linux Ray takes the machine's outward address as the node's even when told 127.0.0.1;
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes it keep loopback (as Ray does on a laptop), so
    these bind 127.0.0.1.

The token is generated once and kept where every Ray tool looks for it (`~/.ray/auth_token`,
mode 0600), unless `RAY_AUTH_TOKEN` or `RAY_AUTH_TOKEN_PATH` gives one. `serve status` then
needs `RAY_AUTH_MODE=token`; the dashboard asks for the token once (`ray get-auth-token`).
`RAY_AUTH_MODE=disabled samvad run` turns token auth off on purpose (with a warning).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

LOOPBACK_NODE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def default_token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"


def ensure_token(path: Path) -> Path:
    """`path` holding a token (256 random bits, as Ray makes them), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)  # a token others can read is no secret
        if path.read_text(encoding="utf-8").strip():
            return path
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(32))
    return path


def node_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables to set before Ray starts, given the current environment: token
    auth on (and a token) unless `RAY_AUTH_MODE` says otherwise, and the node on loopback."""
    env = dict(os.environ if environ is None else environ)
    out = dict(LOOPBACK_NODE)
    mode = env.get("RAY_AUTH_MODE", "token").lower()
    out["RAY_AUTH_MODE"] = mode
    if mode == "token" and not env.get("RAY_AUTH_TOKEN"):
        out["RAY_AUTH_TOKEN_PATH"] = str(ensure_token(Path(env.get("RAY_AUTH_TOKEN_PATH") or default_token_path())))
    return out


def token_auth_off(env: Mapping[str, str]) -> bool:
    return env.get("RAY_AUTH_MODE", "").lower() != "token"
