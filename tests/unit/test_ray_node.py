"""`samvad run`'s Ray node settings: token auth on by default with a token only its owner reads,
the node on loopback, and an explicit choice kept."""

import stat

import pytest

from samvad import ray_node

pytestmark = pytest.mark.unit


def test_token_auth_is_on_by_default_with_a_private_token(tmp_path):
    path = tmp_path / "ray" / "auth_token"
    env = ray_node.node_env({"RAY_AUTH_TOKEN_PATH": str(path)})
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(path)
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # Ray's HTTP servers bind loopback
    token = path.read_text()
    assert len(token) == 64 and int(token, 16)  # 256 random bits, as Ray makes them
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not ray_node.token_auth_off(env)
    # Generated once: a second start keeps the token every Ray tool already knows.
    ray_node.node_env({"RAY_AUTH_TOKEN_PATH": str(path)})
    assert path.read_text() == token


def test_a_token_others_can_read_is_made_private_and_an_empty_one_replaced(tmp_path):
    path = tmp_path / "auth_token"
    path.write_text("a" * 64)
    path.chmod(0o644)
    ray_node.ensure_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "a" * 64
    path.write_text("")
    ray_node.ensure_token(path)
    assert len(path.read_text()) == 64


def test_an_explicit_choice_is_kept(tmp_path):
    given = ray_node.node_env({"RAY_AUTH_TOKEN": "t" * 64, "HOME": str(tmp_path)})
    assert given["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN_PATH" not in given
    off = ray_node.node_env({"RAY_AUTH_MODE": "disabled"})
    assert off["RAY_AUTH_MODE"] == "disabled" and ray_node.token_auth_off(off)
    assert "RAY_AUTH_TOKEN_PATH" not in off
