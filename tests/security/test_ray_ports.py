"""An attacker who can reach the machine but has no Ray token: under `samvad run`'s defaults every
listening socket of the service's process tree is on loopback or refuses a token-less call.

The attack is the one Ray Serve's replicas invite: their inter-deployment gRPC server binds every
interface and unpickles the request metadata it is sent. The probe sends a pickle that would
create a file if it were ever loaded, without a token, to every socket not on loopback: each must
answer UNAUTHENTICATED, and the file must never appear. A socket that answers anything else (an
HTTP server, a gRPC server without Ray's auth interceptor) fails the test."""

from __future__ import annotations

import ipaddress
import os
import pickle
import socket
import stat
import time
from pathlib import Path

import grpc
import psutil
import pytest

from tests.first_hour import running

pytestmark = [pytest.mark.e2e, pytest.mark.own_ray]
METHOD = "/ray.serve.ASGIService/HandleRequest"


class Bomb:
    """Creates `path` when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running(tmp_path_factory.mktemp("ray-ports")) as svc:
        yield svc


def _tree_listeners(pid: int) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket listening in `pid`'s process tree."""
    root = psutil.Process(pid)
    pids = {root.pid} | {p.pid for p in root.children(recursive=True)}
    names = {}
    for p in pids:
        try:
            names[p] = psutil.Process(p).name()
        except psutil.NoSuchProcess:
            pass
    return [
        (c.laddr.ip, c.laddr.port, names.get(c.pid, "?"))
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _outward_address() -> str:
    """An address of this machine that another machine would use (a wildcard socket answers on
    it); loopback when the machine has none, which reaches wildcard sockets just the same."""
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                return a.address
    return "127.0.0.1"


def _call(address: str, port: int, payload: bytes, metadata=()) -> grpc.StatusCode:
    from ray.serve.generated import serve_pb2

    host = f"[{address}]" if ":" in address else address
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=lambda m: m.SerializeToString())
        try:
            call(serve_pb2.ASGIRequest(pickled_request_metadata=payload), timeout=5, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_no_socket_of_the_service_runs_a_call_without_ray_token(service, tmp_path):
    time.sleep(5)  # replicas start their inter-deployment servers just after "up"
    listeners = _tree_listeners(service.proc.pid)
    assert any(p == 8000 for _, p, _ in listeners), listeners  # the tree really is the service's
    exposed = [(a, p, n) for a, p, n in listeners if not _loopback(a)]
    marker = tmp_path / "unpickled"
    target = _outward_address()
    answers = {}
    for address, port, name in exposed:
        to = target if ipaddress.ip_address(address).is_unspecified else address
        answers[(to, port, name)] = _call(to, port, pickle.dumps(Bomb(marker)))
    wrong = {k: v for k, v in answers.items() if v != grpc.StatusCode.UNAUTHENTICATED}
    assert not wrong, f"sockets reachable from other machines that do not demand Ray's token: {wrong}"
    assert not marker.exists(), "a token-less call was unpickled"


def test_the_refusal_is_the_token_and_the_token_is_the_owners_alone(service):
    """With the token the same servers take the call (so the refusals above are token auth, not
    a closed port); the token file is readable by its owner only."""
    path = Path.home() / ".ray" / "auth_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    target = _outward_address()
    exposed = [(a, p) for a, p, _ in _tree_listeners(service.proc.pid) if not _loopback(a)]
    assert exposed, "no replica gRPC server found to check"
    address, port = exposed[0]
    to = target if ipaddress.ip_address(address).is_unspecified else address
    code = _call(to, port, b"", metadata=(("authorization", f"Bearer {token}"),))
    assert code != grpc.StatusCode.UNAUTHENTICATED
