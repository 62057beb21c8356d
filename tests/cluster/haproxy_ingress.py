"""Serve's HAProxy ingress mode as `samvad run --ingress haproxy` sets it up (deployments/haproxy.py):
a REST turn and a voice call go through HAProxy to ingress replicas that serve HTTP themselves;
the caller's address is the one HAProxy saw (a forged X-Forwarded-For is not believed, so the
per-address limits hold); HAProxy's statistics and metrics listeners are on loopback.

Run by tests/cluster/test_haproxy_ingress.py in its own process (Serve reads its ingress mode
when it is imported). Prints one JSON line with what it saw; exits non-zero when an
expectation fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["SAMVAD_LIMITS__AUTH_FAILURES_PER_MINUTE"] = "3"
for _name in ("SAMVAD_SERVICE__KEY_SECRET", "SAMVAD_SERVICE__RESUME_SECRET", "SAMVAD_SERVICE__PHONE_SECRET"):
    os.environ.setdefault(_name, secrets.token_urlsafe(32))
from deployments.haproxy import ingress_env  # noqa: E402
from deployments.serve_config import export_node_env  # noqa: E402

SERVE_CONFIG = str(ROOT / "serve_config.yaml")
MODE_ENV = ingress_env("haproxy", isolated=True)
os.environ.update(MODE_ENV)
NODE_ENV = export_node_env(SERVE_CONFIG) | MODE_ENV  # before Ray is imported, as `samvad run` does

import httpx  # noqa: E402
import psutil  # noqa: E402
import ray  # noqa: E402
import websockets  # noqa: E402
from ray import serve  # noqa: E402

from deployments.app import build_app  # noqa: E402
from deployments.serve_config import deployment_options  # noqa: E402
from samvad.settings import load_settings, secret  # noqa: E402
from samvad.storage import embedded  # noqa: E402
from samvad.storage.repository import Repository  # noqa: E402
from testkit import ray_local  # noqa: E402

PORT = 8768
CONFIG = str(ROOT / "configs" / "stub.yaml")


def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="samvad-haproxy-"))
    dsn, redis_url = embedded.start_postgres(data), embedded.start_redis(data)
    try:
        ray_local.start(NODE_ENV)
        serve.start(http_options={"host": "127.0.0.1", "port": PORT})
        options = deployment_options(SERVE_CONFIG)
        for o in options.values():  # one replica each: this checks the path, not capacity
            o.pop("autoscaling_config", None)
            o["num_replicas"] = 1
        serve.run(
            build_app({"config": CONFIG, "database_url": dsn, "redis_url": redis_url, "deployment_options": options}),
            name="samvad",
            route_prefix="/",
        )
        print(json.dumps(asyncio.run(scenario(dsn))))
    finally:
        serve.shutdown()
        ray.shutdown()
        embedded.stop_redis(data)
        embedded.stop_postgres(data)


async def scenario(dsn: str) -> dict:
    repo = await Repository.connect(dsn, secret(load_settings(CONFIG).service, "key"), max_size=1)
    _, key = await repo.create_key("haproxy")
    await repo.close()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", timeout=60) as client:
        sid = (await client.post("/api/v1/sessions", json={}, headers={"X-API-Key": key})).json()["id"]
        turn = await client.post(
            "/api/v1/turn",
            json={"session_id": sid, "text": "what is the stub answer", "speak": False},
            headers={"X-API-Key": key},
        )
        assert turn.status_code == 200 and turn.json()["response"]["response_text"], turn.text
    # Bad keys from 127.0.0.2 (loopback, but not an address uvicorn trusts), each claiming another
    # address: the limit of 3 failures per address counts them all against 127.0.0.2.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", timeout=60, transport=transport) as stranger:
        bad = [
            (
                await stranger.post(
                    "/api/v1/sessions", json={}, headers={"X-API-Key": "nope", "X-Forwarded-For": f"203.0.113.{i}"}
                )
            ).status_code
            for i in range(1, 6)
        ]
        # The failures are counted against the address, not against the good keys behind it (a
        # NAT, a proxy): a key that verifies is still admitted from there.
        good = await stranger.post("/api/v1/sessions", json={}, headers={"X-API-Key": key})
    assert bad[:3] == [401] * 3 and bad[3:] == [429, 429], bad
    assert good.status_code == 201, good.text
    # Another caller through the same HAProxy has a bucket of its own: its bad key is a plain 401.
    other_transport = httpx.AsyncHTTPTransport(local_address="127.0.0.3")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", timeout=60, transport=other_transport) as other:
        first = await other.post("/api/v1/sessions", json={}, headers={"X-API-Key": "nope"})
    assert first.status_code == 401, first.text
    async with websockets.connect(
        f"ws://127.0.0.1:{PORT}/api/v1/voice-session",
        additional_headers={"X-API-Key": key},
        max_size=None,
        open_timeout=60,
    ) as ws:
        await ws.send(json.dumps({"type": "session.start", "language": "en-IN"}))
        assert json.loads(await ws.recv())["type"] == "session.started"
        await ws.send(json.dumps({"type": "text.input", "text": "what is the stub answer"}))
        kinds = []
        while not kinds or kinds[-1] != "turn.done":
            kinds.append(json.loads(await asyncio.wait_for(ws.recv(), 60))["type"])
        assert "audio" in kinds, kinds
    # The HAProxy running is the bundled binary (the wrapper exec'd it), on the file the wrapper edited.
    running = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and Path(p.info["cmdline"][0]).name == "haproxy"
    ]
    assert running, "no haproxy process"
    config = Path(running[-1][running[-1].index("-f") + 1]).read_text()
    binds = [line.split()[1] for line in config.splitlines() if line.strip().startswith("bind ")]
    assert "option forwardfor" in config, config
    assert "timeout http-request" in config and "tcp-request connection track-sc0 src,ipmask(32,64)" in config, config
    admin_line = next(line for line in config.splitlines() if line.strip().startswith("stats socket "))
    assert " mode 600 " in admin_line, admin_line
    assert f"127.0.0.1:{PORT}" in binds and all(b.startswith("127.0.0.1:") for b in binds), binds
    # No ingress replica up (as while Serve replaces a dead one): a JSON 503, not Serve's text 500.
    # The servers are put in maintenance through HAProxy's admin socket rather than by killing the
    # replica, which Serve may replace before HAProxy's retries give up (then the request succeeds).
    admin = next(line.split()[2] for line in config.splitlines() if line.strip().startswith("stats socket "))
    servers = [
        row.split()[1:4:2]  # backend name, server name
        for row in haproxy_admin(admin, "show servers state").splitlines()
        if len(row.split()) > 3 and row[0].isdigit()
    ]
    assert servers, "HAProxy reports no servers"
    for backend, server in servers:
        haproxy_admin(admin, f"set server {backend}/{server} state maint")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", timeout=30) as client:
        down = await client.get("/healthz")
    for backend, server in servers:
        haproxy_admin(admin, f"set server {backend}/{server} state ready")
    assert down.status_code == 503 and down.headers["retry-after"] == "1", (down.status_code, down.text)
    assert down.json()["error"]["code"] == "service_unavailable", down.text
    return {"haproxy": True, "bad_key_statuses": bad, "voice_events": len(kinds), "binds": binds}


def haproxy_admin(path: str, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        return b"".join(iter(lambda: sock.recv(65536), b"")).decode()


if __name__ == "__main__":
    main()
