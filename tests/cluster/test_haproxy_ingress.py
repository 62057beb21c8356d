"""Serve's HAProxy ingress mode (`samvad run --ingress haproxy`): REST and voice through HAProxy,
callers' addresses as HAProxy saw them, HAProxy's own listeners on loopback (the scenario runs in
its own process: Serve reads its ingress mode when it is imported)."""

import pytest

from tests.cluster.scenario import run

pytestmark = [pytest.mark.e2e, pytest.mark.own_ray]


def test_rest_and_voice_through_haproxy_with_the_callers_own_address():
    seen = run("haproxy_ingress.py", "haproxy")
    assert seen["bad_key_statuses"] == [401, 401, 401, 429, 429]
