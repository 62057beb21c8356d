import json
import os
import sys

import pytest

from deployments.haproxy import PORT_SETTINGS, UNAVAILABLE, WRAPPER, EdgeLimits, ingress_env, patch

pytestmark = pytest.mark.unit

# The shape of what Serve 2.60 generates (ray/serve/_private/haproxy_templates.py), trimmed.
GENERATED = """global
    stats socket /tmp/haproxy-serve/x/admin.sock mode 666 level admin expose-fd listeners
defaults
    mode http
    option httplog
    errorfile 502 /tmp/haproxy-serve/x/500.http
    errorfile 503 /tmp/haproxy-serve/x/500.http
frontend prometheus
    bind :9101
    mode http
frontend http_frontend
    bind 127.0.0.1:8000
    acl routes path -i /-/routes
backend http-samvad
    server SERVE_REPLICA_a 127.0.0.1:30000 check
listen stats
  bind *:8404
  stats enable
"""


def test_the_generated_config_gains_forwardfor_and_loopback_listeners():
    out = patch(GENERATED)
    lines = [line.strip() for line in out.splitlines()]
    front = lines.index("frontend http_frontend")
    assert lines[front + 1 : front + 3] == ["bind 127.0.0.1:8000", "option forwardfor"]
    assert "bind 127.0.0.1:9101" in lines and "bind 127.0.0.1:8404" in lines
    assert lines.count("option forwardfor") == 1
    assert patch(out) == out  # Serve rewrites and reloads: a second pass changes nothing
    assert "server SERVE_REPLICA_a 127.0.0.1:30000 check" in lines
    assert "errorfile 502 /tmp/haproxy-serve/x/500.http" in lines  # left alone without a page of our own
    ours = patch(GENERATED, "/tmp/haproxy-serve/x/samvad-unavailable.http")
    assert "errorfile 503 /tmp/haproxy-serve/x/samvad-unavailable.http" in [line.strip() for line in ours.splitlines()]


def test_the_unavailable_page_is_a_json_503_with_retry_after():
    head, _, body = UNAVAILABLE.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 503 ") and "Retry-After: 1" in head
    assert f"Content-Length: {len(body)}" in head
    assert json.loads(body)["error"]["code"] == "service_unavailable"


def test_ingress_modes():
    assert ingress_env("proxy") == {}
    env = ingress_env("haproxy")
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == os.path.join(os.path.dirname(sys.executable), WRAPPER)
    with pytest.raises(ValueError):
        ingress_env("nginx")


def test_isolated_haproxy_listeners_take_free_ports_of_their_own():
    a, b = ingress_env("haproxy", isolated=True), ingress_env("haproxy", isolated=True)
    ports = [int(env[name]) for env in (a, b) for name in PORT_SETTINGS]
    assert len(set(ports)) == len(ports) and 8500 not in ports  # Serve's fixed ports would clash
    assert not set(PORT_SETTINGS) & set(ingress_env("haproxy"))  # `samvad run` keeps Serve's


def test_the_edge_has_budgets_a_private_admin_socket_and_no_secrets_in_its_log():
    out = patch(GENERATED, limits=EdgeLimits(request_s=7, client_idle_s=40, tunnel_s=900, conns_per_source=12))
    lines = [line.strip() for line in out.splitlines()]
    assert any(line.startswith("stats socket ") and " mode 600 " in line for line in lines)
    assert not any(" mode 666 " in line for line in lines)
    defaults = lines[lines.index("defaults") + 1 : lines.index("frontend prometheus")]
    for want in ("timeout http-request 7s", "timeout client 40s", "timeout tunnel 900s", "timeout http-keep-alive 10s"):
        assert want in defaults
    # Serve's `option httplog` logs the whole URI, query string (phone tokens) included.
    assert "option httplog" not in lines
    log_format = next(line for line in defaults if line.startswith("log-format "))
    assert log_format.endswith('%{+Q}HPO"') and "}r " not in log_format and "HU" not in log_format
    front = lines[lines.index("frontend http_frontend") :]
    assert "tcp-request connection track-sc0 src,ipmask(32,64)" in front
    assert any("sc0_conn_cur gt 12" in line and "src 127.0.0.0/8" in line for line in front)
    assert patch(out, limits=EdgeLimits(request_s=7, client_idle_s=40, tunnel_s=900, conns_per_source=12)) == out


def test_edge_limits_from_the_environment():
    assert EdgeLimits.from_env({}) == EdgeLimits()
    limits = EdgeLimits.from_env({"SAMVAD_HAPROXY_REQUEST_S": "5", "SAMVAD_HAPROXY_CONNS_PER_SOURCE": "9"})
    assert limits.request_s == 5 and limits.conns_per_source == 9 and limits.tunnel_s == EdgeLimits().tunnel_s
